"""The one settings object of judgeline.

Contract:
- Every setting comes from the environment with the prefix ``JUDGELINE_`` (nested groups use ``__``:
  ``JUDGELINE_KAFKA__BOOTSTRAP_SERVERS``), or from a ``.env`` file in the working directory.
- The object is frozen: code never mutates settings, it asks for a new object (``settings.model_copy``).
- Secrets (frontier API key, SASL password, ClickHouse password) are ``SecretStr``; ``masked()`` is the only
  representation that leaves the process (``judgeline config``, logs).
- Defaults are the embedded stack on 127.0.0.1 (Tansu broker, chDB store, CPU Triton); production points the
  same names at Apache Kafka, a ClickHouse server and a GPU Triton (see ``infra/compose`` and ``infra/k8s``).
- No I/O happens here beyond reading the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "JUDGELINE_"
ENV_NESTED_DELIMITER = "__"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSettings(_Group):
    """Topic names; partition counts apply when judgeline creates the topics (embedded stack, `judgeline topics`)."""

    traces: str = "judgeline.traces"
    frontier_requests: str = "judgeline.frontier-requests"
    verdicts: str = "judgeline.verdicts"
    frontier_verdicts: str = "judgeline.frontier-verdicts"
    dead_letters: str = "judgeline.dead-letters"
    # the routing policies (docs/routing.md): compacted, one partition, keyed by the policy's scope; every inline
    # worker reads it from the beginning, so the newest policy survives compaction and reaches a new worker
    routing_policies: str = "judgeline.routing-policies"
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=7)

    def names(self) -> list[str]:
        """The stream topics (``partitions`` partitions each)."""
        return [self.traces, self.frontier_requests, self.verdicts, self.frontier_verdicts, self.dead_letters]

    def compacted(self) -> list[str]:
        """The compacted control topics (one partition, ``cleanup.policy=compact``)."""
        return [self.routing_policies]


class KafkaSettings(_Group):
    """Kafka client settings, passed through to confluent-kafka and Faust."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    consumer_group: str = "judgeline-inline"
    frontier_consumer_group: str = "judgeline-frontier"
    # Short timeouts suit the embedded broker (group joins take about half the session timeout);
    # production raises them (e.g. 45 s session, 3 s heartbeat).
    session_timeout_ms: int = Field(6000, ge=1000, le=300_000)
    heartbeat_interval_ms: int = Field(1000, ge=100, le=60_000)
    # how long a worker's fetch may wait on the broker for new data (Faust itself fixes 1500 ms). The embedded broker
    # answers a waiting fetch late, so the default is short: measured at light load 150 ms p50 from produce to
    # judged at 500, 40 ms at 100. On Apache Kafka a shorter wait only adds idle fetch requests (production: 500).
    fetch_max_wait_ms: int = Field(100, ge=1, le=60_000)
    # how often a worker commits the offsets of stored batches (Faust's broker_commit_interval). A crash redelivers at
    # most what was stored since the last commit (idempotent rows); the fault suite lengthens it to see redelivery.
    commit_interval_s: float = Field(1.0, gt=0, le=600)
    # the longest a worker's consumer may go without polling before it leaves its group (Kafka's
    # max.poll.interval.ms, Faust's broker_max_poll_interval; Faust's own default is 1000 s). A worker holding a batch
    # while the store is down keeps polling (Faust's fetcher runs apart from the agent: measured, a 14 s hold under a
    # 3 s limit kept the member in its group), so this bounds a stuck event loop; tests/faults/test_long_hold.py
    # shortens it.
    max_poll_interval_s: float = Field(300.0, gt=0, le=3600)
    # false where the broker's high watermark is wrong (the embedded Tansu broker: platform.md): the workers then
    # export no consumer lag rather than a wrong one. The embedded stack sets it false.
    broker_reports_lag: bool = True
    # how long a stage's publish waits for the broker to acknowledge its messages (librdkafka's message.timeout.ms)
    # before it fails; the stage then holds and publishes the batch again, so this only bounds one attempt
    publish_timeout_s: float = Field(30.0, gt=0, le=3600)
    topics: TopicSettings = TopicSettings()

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> "KafkaSettings":
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                "kafka.heartbeat_interval_ms must be at most a third of kafka.session_timeout_ms "
                f"(got {self.heartbeat_interval_ms} and {self.session_timeout_ms}); "
                "set JUDGELINE_KAFKA__HEARTBEAT_INTERVAL_MS lower"
            )
        return self

    def client_config(self) -> dict[str, Any]:
        """librdkafka configuration shared by producers, consumers and the admin client (secrets included)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf


class ClickHouseSettings(_Group):
    """Where verdicts are stored.

    ``dsn`` is ``chdb:///abs/path`` for the embedded engine (the default, under the state directory) or
    ``http(s)://host:8123`` for a ClickHouse server. With a chdb DSN, a process first looks for the embedded store
    server that ``judgeline up`` started on that path and talks to it over HTTP (chDB allows one process per path);
    only when none runs does it open the path in process.
    """

    dsn: str | None = None
    database: str = "judgeline"
    username: str = "default"
    password: SecretStr | None = None
    # rows per insert statement: above the inline worker's largest batch, so a batch is one insert per table
    insert_batch_rows: int = Field(10_000, ge=1, le=1_000_000)

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not (v.startswith("chdb://") or v.startswith("http://") or v.startswith("https://")):
            raise ValueError(
                f"clickhouse.dsn must start with chdb:// (embedded) or http(s):// (server), got {v!r}; "
                "set JUDGELINE_CLICKHOUSE__DSN"
            )
        return v

    @field_validator("database")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not v.replace("_", "").isalnum() or v[0].isdigit():
            raise ValueError(
                f"clickhouse.database must be a plain identifier (letters, digits, _), got {v!r}"
            )
        return v


class TritonSettings(_Group):
    """The inline judge's model server."""

    url: str = "127.0.0.1:8001"  # gRPC endpoint
    http_url: str = "127.0.0.1:8000"
    model_name: str = "judge"
    model_version: str = ""  # empty: the server's latest loaded version
    timeout_s: float = Field(30.0, gt=0, le=600)  # per request; a CPU Triton needs seconds for 32 long traces
    max_retries: int = Field(3, ge=0, le=20)
    # requests of one batch in flight at once: the rest wait in the client, not in Triton's queue, so each request's
    # deadline covers its own inference (a 512-trace batch sent as 8 concurrent requests to a one-instance CPU model
    # made the last ones queue past their deadline). GPU deployments with several model instances raise it.
    max_concurrent_requests: int = Field(2, ge=1, le=64)


# the built-in redactions of judge_engine/clients/redaction.py, in the order they apply
REDACT_PATTERNS = ("email", "credit_card", "ipv6", "ipv4", "phone")


class FrontierSettings(_Group):
    """The frontier judge: any OpenAI-compatible endpoint (the embedded default is `judgeline frontier-replay`)."""

    base_url: str = "http://127.0.0.1:8090/v1"
    model: str = "gpt-4"
    api_key: SecretStr = SecretStr("not-needed-for-the-embedded-replay")
    concurrency: int = Field(8, ge=1, le=1024)
    rate_limit_rps: float = Field(20.0, gt=0, le=100_000)
    budget_usd: float = Field(10.0, ge=0)
    price_per_1k_input_tokens_usd: float = Field(0.01, ge=0)
    price_per_1k_output_tokens_usd: float = Field(0.03, ge=0)
    timeout_s: float = Field(30.0, gt=0, le=600)
    max_retries: int = Field(5, ge=0, le=50)
    judge_both_orders: bool = True
    # PII removed from a trace before it is sent (judge_engine/clients/redaction.py): built-in pattern names, comma-separated
    # (email, credit_card, ipv6, ipv4, phone), and/or a "module:function" (str -> str) applied after them
    redact: str = ""
    redact_hook: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

    @field_validator("redact")
    @classmethod
    def _known_patterns(cls, v: str) -> str:
        names = {n.strip() for n in v.split(",") if n.strip()}
        unknown = sorted(names - set(REDACT_PATTERNS))
        if unknown:
            raise ValueError(f"unknown redaction pattern(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(REDACT_PATTERNS)} (JUDGELINE_FRONTIER__REDACT, comma-separated)")
        return ",".join(n for n in REDACT_PATTERNS if n in names)  # the order in which they apply


class RoutingSettings(_Group):
    """Which inline verdicts also go to the frontier judge."""

    threshold: float = Field(0.7, ge=0.0, le=1.0)
    calibration_sample_rate: float = Field(0.05, ge=0.0, le=1.0)
    accepted_error_rate: float = Field(0.05, ge=0.0, le=1.0)
    # what an inline worker does before any routing policy has reached it (docs/routing.md): ``route_all`` sends
    # every trace to the frontier too (safe: a judge nobody has measured on this traffic is not trusted), ``threshold``
    # routes by ``threshold`` and ``calibration_sample_rate`` above (the behaviour before routing policies)
    without_policy: Literal["route_all", "threshold"] = "route_all"
    # how often `route-policy watch` runs the drift test alone between scheduled re-fits (an alarm re-fits at once)
    drift_check_s: float = Field(10.0, gt=0, le=3600)
    # how long a starting inline worker waits to read the routing-policies topic up to its end before judging
    policy_wait_s: float = Field(10.0, ge=0.0, le=600.0)
    # the routing policy's fit (judge_engine/online/policy.py, docs/routing.md): a segment needs min_evidence
    # frontier-checked verdicts before it accepts any inline verdict; the accepted verdicts' error must have a
    # one-sided Clopper-Pearson upper bound at confidence_level within accepted_error_rate
    min_evidence: int = Field(100, ge=1)
    confidence_level: float = Field(0.95, gt=0.5, lt=1.0)
    # adaptive calibration sampling: a segment's rate starts at max_sample_rate while its evidence is thin and decays
    # to calibration_sample_rate; the extra frontier fraction it costs is capped at extra_sample_budget of traffic
    max_sample_rate: float = Field(0.3, ge=0.0, le=1.0)
    extra_sample_budget: float = Field(0.1, ge=0.0, le=1.0)
    # the drift alarm: a Bernoulli CUSUM per segment against the agreement the policy assumed, testing for the
    # agreement odds falling by drift_odds_ratio; an alarm at drift_h
    drift_odds_ratio: float = Field(3.0, gt=1.0)
    drift_h: float = Field(8.0, gt=0.0)
    # a trace whose novelty score (where the judge gives one) is above this routes with reason ``novel``; None: never.
    # The served score is the distance to the version's training items over the version's own threshold (a high
    # percentile of its validation split, judge_engine/model/novelty.py), so 1.0 routes what the version calls novel
    novelty_threshold: float | None = Field(1.0, ge=0.0)
    # the controller (`judgeline route-policy`, docs/routing.md): which policies it publishes, on what evidence
    policy_scope: str = Field("default", min_length=1, max_length=256)
    evidence_window_h: float = Field(168.0, gt=0.0, le=24 * 366)  # how far back the controller reads evidence


class GateSettings(_Group):
    """The deployment gate of `judgeline export`/`deploy` (issue 16): the bar a new judge version must clear on the
    gold labels in ClickHouse."""

    min_kappa: float = Field(0.6, ge=-1.0, le=1.0)  # Cohen's kappa vs the human gold labels, held-out items only
    max_items: int = Field(1000, ge=1, le=1_000_000)  # gold items judged per decision (a seeded sample beyond)


class ShadowSettings(_Group):
    """Shadow mode (docs/judge.md, "Shadow mode"): a candidate judge version, served by Triton as a model of its own
    beside the live one (``judgeline shadow start``), scores every inline batch too; its verdicts go to
    ``shadow_verdicts`` only (never routed, never the trace's verdict, never published).

    ``version``: ``""`` (off), ``latest`` (whatever version the shadow model serves: follows ``judgeline shadow
    start`` without restarting the workers) or a version number (that version exactly). ``model_name``: the Triton
    model the candidate is served as (empty: ``<triton.model_name>_shadow``). ``timeout_s``: the most a batch's
    shadow call may take; a shadow call is never retried and its failure never holds the batch (it is logged and
    counted: ``judgeline_shadow_failures_total``).
    """

    version: str = ""
    model_name: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$", max_length=128)
    timeout_s: float = Field(10.0, gt=0, le=600)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        v = v.strip()
        if v not in ("", "latest") and not v.isdigit():
            raise ValueError(f"shadow.version must be empty (off), 'latest' or a version number, got {v!r}; set "
                             "JUDGELINE_SHADOW__VERSION")
        return v

    @property
    def enabled(self) -> bool:
        return self.version != ""


class StreamSettings(_Group):
    """The stream workers: micro-batching, what an unavailable judge or store means, the Faust web server.

    ``judge_unavailable``: what the inline agent does with a batch when Triton still fails after its retries:
    ``hold`` stops consuming and retries the batch with backoff until the judge answers (nothing is acked
    meanwhile); ``frontier`` sends each trace of the batch to the frontier judge with reason
    ``judge_unavailable`` (its verdict then becomes the trace's verdict, ``source=frontier``).
    An unavailable store always holds: rows are never dropped and offsets never committed before they are stored.
    """

    # what consumes the inline worker's topics: ``librdkafka`` (confluent-kafka's batch consume, which builds each
    # batch in C: streams.batch_consumer) or ``faust`` (Faust's per-event stream, which alone costs about 200 us of
    # CPU per message: benchmarks/consumer_ceiling.py). Same guarantees either way: tests/faults passed on both
    # (it runs on the default; docs/benchmarks-history.md, fourth session)
    consumer: Literal["librdkafka", "faust"] = "librdkafka"
    # the inline worker's largest micro-batch: reached at once while it is behind (a backlog), while at light load a
    # batch is what arrived within batch_within_s. Each batch costs a fixed ~70 ms on the embedded store (one insert
    # per table), so a large maximum is what lets a worker catch up (benchmarks/throughput.py: issue 13)
    batch_size: int = Field(2048, ge=1, le=4096)
    batch_within_s: float = Field(0.05, gt=0, le=60)
    # judged batches that may wait while the one before is stored and published (the judging of batch N+1 overlaps
    # the storing of batch N; offsets are still committed in order and only after their rows are stored)
    batches_in_flight: int = Field(2, ge=1, le=16)
    frontier_batch_size: int = Field(16, ge=1, le=4096)
    frontier_batch_within_s: float = Field(0.2, gt=0, le=60)
    judge_unavailable: Literal["hold", "frontier"] = "hold"
    hold_max_backoff_s: float = Field(10.0, gt=0, le=600)
    worker_web_port: int = Field(6066, ge=1, le=65535)
    # the Faust web server (health checks); 0.0.0.0 in a container so that the orchestrator's probes reach it
    worker_web_bind: str = "127.0.0.1"


class OtelSettings(_Group):
    """OpenTelemetry: verdicts out as ``gen_ai.evaluation.result`` events, GenAI spans in from the Collector's
    Kafka exporter.

    ``evaluation_events``: when true, every stored verdict also leaves by OTLP/HTTP (``endpoint``, the collector's
    or back-end's base URL; ``/v1/logs`` is appended) as an event parented to the judged span; best effort (the
    verdict is already stored; a back-end that is down loses events, never verdicts). ``headers``: extra request
    headers as ``name=value,name=value`` (e.g. ``Authorization=Basic ...`` for Langfuse), a secret.
    ``ingest_spans``: when true, the inline worker also consumes ``spans_topic``, the topic the Collector's Kafka
    exporter writes (its default name ``otlp_spans``), in ``spans_encoding`` (the exporter's ``otlp_proto`` by
    default, or ``otlp_json``): GenAI chat spans become traces.
    """

    evaluation_events: bool = False
    endpoint: str = "http://127.0.0.1:4318"
    headers: SecretStr | None = None
    service_name: str = "judgeline"
    timeout_s: float = Field(10.0, gt=0, le=300)
    export_delay_ms: int = Field(1000, ge=1, le=60_000)
    ingest_spans: bool = False
    spans_topic: str = "otlp_spans"
    spans_encoding: Literal["otlp_proto", "otlp_json"] = "otlp_proto"


class StackSettings(_Group):
    """The embedded stack started by `judgeline up` (ports 0 mean: pick a free one)."""

    state_dir: Path = Path(".judgeline")
    bind_host: str = "127.0.0.1"
    broker_port: int = Field(0, ge=0, le=65535)
    triton_http_port: int = Field(0, ge=0, le=65535)
    triton_grpc_port: int = Field(0, ge=0, le=65535)
    triton_metrics_port: int = Field(0, ge=0, le=65535)
    store_port: int = Field(0, ge=0, le=65535)
    serving_venv: Path | None = None  # default: ~/.cache/judgeline/serving-venv-<hash of its requirements>
    model_repository: Path | None = None  # default: the repository's triton_models/
    start_timeout_s: float = Field(120.0, gt=0, le=3600)

    @field_validator("bind_host")
    @classmethod
    def _loopback_only(cls, v: str) -> str:
        if v not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(
                f"stack.bind_host must be a loopback address (127.0.0.1, localhost or ::1), got {v!r}: "
                "the embedded stack is for one machine; use production services for anything else"
            )
        return v


class Settings(BaseSettings):
    """Effective configuration of one judgeline process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        extra="forbid",
        frozen=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    triton: TritonSettings = TritonSettings()
    frontier: FrontierSettings = FrontierSettings()
    routing: RoutingSettings = RoutingSettings()
    stream: StreamSettings = StreamSettings()
    otel: OtelSettings = OtelSettings()
    stack: StackSettings = StackSettings()
    gate: GateSettings = GateSettings()
    shadow: ShadowSettings = ShadowSettings()

    @property
    def shadow_model_name(self) -> str:
        """The Triton model a shadow candidate is served as (``shadow.model_name``, default ``<model>_shadow``)."""
        return self.shadow.model_name or f"{self.triton.model_name}_shadow"

    @property
    def state_dir(self) -> Path:
        return self.stack.state_dir.expanduser().resolve()

    @property
    def clickhouse_dsn(self) -> str:
        """The configured DSN, or the embedded chDB path under the state directory."""
        return self.clickhouse.dsn or f"chdb://{self.state_dir / 'clickhouse'}"

    def masked(self) -> dict[str, Any]:
        """All settings as plain data, every secret replaced by '**********' (or None when unset)."""
        return _mask(self.model_dump(mode="python"))


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def env_fields(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> Iterator[tuple[str, Any]]:
    """(environment variable name, annotation) of every setting; a group is listed too (it accepts JSON)."""
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name.upper()}"
        ann = field.annotation
        yield name, ann
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from env_fields(ann, name + ENV_NESTED_DELIMITER)


def env_names() -> set[str]:
    """Every environment variable name the settings accept (used to validate deploy files)."""
    return {name for name, _ in env_fields()}


def secret_env_names() -> set[str]:
    """The names of the settings typed ``SecretStr`` (or ``SecretStr | None``)."""
    return {name for name, ann in env_fields() if ann is SecretStr or SecretStr in get_args(ann)}
