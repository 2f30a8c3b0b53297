"""The Faust app of a stream worker, built from settings, and the glue every agent shares.

Contract:
- ``create_app(settings, role)`` builds a ``faust.App`` whose id (the consumer group) is
  ``settings.kafka.consumer_group`` for ``inline`` and ``settings.kafka.frontier_consumer_group`` for ``frontier``;
  broker and credentials come from ``settings.kafka`` (PLAINTEXT, SSL, SASL PLAIN/SCRAM over plaintext or TLS);
  values and keys are ``raw`` bytes (so bad bytes reach the dead-letter path instead of crashing a codec); the
  session and heartbeat timeouts and the max poll interval are the settings' (short for the embedded broker, see
  platform.md); a new group
  starts at the earliest offset; on shutdown and rebalance a batch in progress is not waited for
  (``stream_wait_empty`` off: it stays unacknowledged and is redelivered, so SIGTERM ends a worker in seconds
  whatever the judge or the store is doing); the web server (health checks) binds to ``stream.worker_web_bind`` on
  ``stream.worker_web_port``; Faust's data directory is under the state directory; no leader topic is created.
  Besides Faust's own pages (``/`` answers as soon as the worker runs: the liveness probe), ``/ready/`` answers 200
  once the consumer has joined its group and holds partitions (not while rebalancing), else 503: the consumer is
  ``consumer_state(app)``, the batch consumer an agent registered as ``app.judgeline_consumer``
  (``streams.batch_consumer``) or else Faust's (``FaustConsumerState``, which also reads the lag).
- The consumer's fetch wait is ``kafka.fetch_max_wait_ms`` instead of the 1500 ms Faust fixes: the embedded broker
  does not answer a waiting fetch as soon as data arrives, so 1500 ms added about half a second to every trace at
  light load (measured with aiokafka: 250-670 ms per message at 1500, 3-57 ms at 500, 5-29 ms at 100).
- ``incoming(event)`` turns a Faust event (``incoming_fields``: any client's record fields) into the stages'
  ``judge_engine.online.pipeline.Incoming`` and never raises on a record's contents: every Kafka-level field is untrusted. The timestamp goes through ``kafka_time`` (absent, -1,
  not a finite number, or outside 2000..2200, e.g. a CreateTime of 10**15 ms: ``None``, so nothing downstream
  meets a datetime that cannot be stored); key and value are kept only when they are bytes (else treated as
  absent: a tombstone dead-letters with its reason); topic/partition/offset as the consumer reported them.
- ``acknowledged_after(events)`` is the at-least-once guard. Faust's ``stream.take_events`` acknowledges a batch's
  events when the consumer asks for the next batch, and also when the generator is closed after an error or on
  shutdown: on its own it could commit offsets of rows never stored. The guard takes one extra reference on every
  message of the batch on entry (``Message.incref``) and releases it (``event.ack()``) only when the body completed
  normally. Faust marks an offset committable only when a message's last reference is released, so an offset is
  committed only after the body (judge, store, publish) has finished; a batch interrupted by an error or a
  shutdown keeps its reference, is never committed, and is redelivered. ``hold_references`` and ``acknowledge``
  are its two halves, for a caller that stores a batch on another task (``streams.overlap``).
- ``process_batches(stream, stage, size, within_s)`` is an agent's plain loop: micro-batches of the stream
  through ``stage.process`` inside ``acknowledged_after`` (the inline agent overlaps instead: ``streams.overlap``).
- ``register_agent(app, topic, name, fun)`` registers every judgeline agent (``register_task(app, name, fun)``, a
  task that consumes through ``streams.batch_consumer`` instead, ends the worker the same way). An agent that crashes (an exception
  out of its body: a bug, nothing a record's contents can cause) ends its worker process at once, with exit status
  1, as a SIGKILL would, after logging the crash (CRITICAL, naming the agent and the error): nothing is committed
  after the crash, and the orchestrator's restart plus the group's redelivery from the last commit recover every
  message (the path ``tests/faults/test_worker_crash.py`` proves). Faust's default was worse: its supervisor
  restarted the agent in place while the crashed agent's stream went on consuming in the background and
  acknowledging what arrived, and Faust's commit then skipped the crashed batch's unacknowledged offsets (its gap
  check misses a gap of one offset at the head, and any gap while nothing is committed yet): a batch was committed
  unstored (found by ``tests/faults/test_shutdown.py``). A graceful stop cannot be trusted there (Faust commits on
  the way out), hence the hard exit.
- ``warm_up(app, settings, store, tables, topics)``: a stage connects its store and the app's producer before its
  first batch (the inline agent, while it reads the policy topic), so the first traces after a
  worker starts do not wait for imports, connections, insert contexts and topic metadata: about half a second,
  measured (issue 13's paced run). A part that cannot connect is logged and left to the first batch.
- ``publisher(app, settings)`` returns the stages' ``publish``: the app's ``streams.batch_producer.BatchProducer``
  (librdkafka; one per app, made on first use) publishes an ``Outbox`` in order and returns when the broker has
  acknowledged every message; a failure raises (the stage holds and publishes the batch again). Faust's aiokafka
  producer, batched one record batch per partition, cost the inline worker about 105 us of CPU per trace, half of
  it (issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import ssl
from datetime import datetime, timezone
from typing import Iterator, Literal, Sequence

from judge_engine.failures import describe
from judge_engine.online.pipeline import Incoming, Outbox
from schemas.settings import KafkaSettings, Settings

log = logging.getLogger("judgeline.worker")
WARM_UP_TIMEOUT_S = 10.0  # the longest a stage waits for its store and broker before its first batch

Role = Literal["inline", "frontier"]
ROLES: tuple[str, ...] = ("inline", "frontier")


def broker_urls(kafka: KafkaSettings) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in kafka.bootstrap_servers.split(",") if hp.strip()]


def credentials(kafka: KafkaSettings):
    """Faust credentials for the configured security protocol (None for PLAINTEXT)."""
    import faust

    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_ca_location) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if kafka.sasl_mechanism == "OAUTHBEARER":
        raise ValueError("kafka.sasl_mechanism OAUTHBEARER is not supported by the stream workers; use PLAIN or "
                         "SCRAM-SHA-256/512 (JUDGELINE_KAFKA__SASL_MECHANISM)")
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password is not None else None
    return faust.SASLCredentials(username=kafka.sasl_username, password=password, ssl_context=context,
                                 mechanism=kafka.sasl_mechanism or "PLAIN")


def group_id(settings: Settings, role: Role) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown worker role {role!r}; choose inline or frontier")
    return settings.kafka.consumer_group if role == "inline" else settings.kafka.frontier_consumer_group


def _apply_fetch_max_wait() -> None:
    """Make Faust's worker consumer use the app's ``judgeline_fetch_max_wait_ms`` (Faust hard-codes 1500 ms)."""
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "judgeline_patched", False):
        return

    def create(self, transport):
        consumer = original(self, transport)
        wait = getattr(self.app, "judgeline_fetch_max_wait_ms", None)
        if wait is not None and hasattr(consumer, "_fetch_max_wait_ms"):
            consumer._fetch_max_wait_ms = wait  # read when the consumer starts its fetcher
        return consumer

    create.judgeline_patched = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create


def create_app(settings: Settings, role: Role):
    import faust

    _apply_fetch_max_wait()
    kafka = settings.kafka
    group = group_id(settings, role)
    datadir = settings.state_dir / "faust" / f"{group}-data"
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        group,
        broker=broker_urls(kafka),
        broker_credentials=credentials(kafka),
        autodiscover=False,
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        broker_commit_interval=kafka.commit_interval_s,
        broker_max_poll_interval=kafka.max_poll_interval_s,
        # on shutdown or rebalance, do not wait for the batch in progress to finish (Faust's default waits without a
        # limit: SIGTERM during a 30 s judge call or a held store did not end the worker within 10 s). The batch is
        # abandoned unacknowledged (``acknowledged_after``) and redelivered; its rows, if any were written, are
        # replaced by their twins (idempotent tables)
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=kafka.topics.partitions,
        topic_replication_factor=kafka.topics.replication_factor,
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.stream.worker_web_bind,
        web_host=settings.stream.worker_web_bind,
        web_port=settings.stream.worker_web_port,
    )
    app.judgeline_fetch_max_wait_ms = kafka.fetch_max_wait_ms

    @app.page("/ready/")
    async def ready(web, request):
        state = consumer_state(app)
        partitions = state.partitions()
        ok = partitions > 0 and state.ready()
        return web.json({"ready": ok, "partitions": partitions}, status=200 if ok else 503)

    return app


class FaustConsumerState:
    """What ``/ready/`` and the lag metric read from a worker whose agents consume through Faust."""

    def __init__(self, app):
        self.app = app

    def _assignment(self) -> set:
        try:
            return set(self.app.consumer.assignment())
        except Exception:  # noqa: BLE001 - the consumer is not up yet
            return set()

    def partitions(self) -> int:
        return len(self._assignment())

    def ready(self) -> bool:
        return not self.app.rebalancing

    def lag(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        consumer = self.app.consumer
        for tp in sorted(self._assignment()):
            try:
                high = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)  # Faust keeps it; no public accessor
            except Exception:  # noqa: BLE001 - a partition being revoked: skip it this scrape
                continue
            if high is not None and high >= 0:
                out[(tp.topic, tp.partition)] = max(0, high - (committed or 0))
        return out


def consumer_state(app):
    """The worker's consumer as ``/ready/`` and the lag metric see it: the batch consumer an agent registered
    (``app.judgeline_consumer``, ``streams.batch_consumer``) or else Faust's own."""
    return getattr(app, "judgeline_consumer", None) or FaustConsumerState(app)


def source_topic(app, name: str):
    return app.topic(name, key_serializer="raw", value_serializer="raw")


KAFKA_TIME_MIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
KAFKA_TIME_MAX = datetime(2200, 1, 1, tzinfo=timezone.utc)
_KAFKA_SECONDS_MIN, _KAFKA_SECONDS_MAX = KAFKA_TIME_MIN.timestamp(), KAFKA_TIME_MAX.timestamp()


def kafka_time(seconds: object) -> datetime | None:
    """A record's Kafka timestamp (seconds since the epoch, as Faust reports it) as a UTC datetime, or None when it
    is absent, not a finite number, or outside [2000, 2200): a producer's CreateTime is whatever it chose to send."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return None
    if not _KAFKA_SECONDS_MIN <= seconds < _KAFKA_SECONDS_MAX:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _bytes_or_none(value: object) -> bytes | None:
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else None


def incoming_fields(value: object, key: object, topic: object, partition: object, offset: object,
                    timestamp_s: object) -> Incoming:
    """A record's fields, as any client reported them, as the stages' ``Incoming`` (never raises on them)."""
    return Incoming(value=_bytes_or_none(value), key=_bytes_or_none(key), topic=str(topic),
                    partition=int(partition), offset=int(offset), timestamp=kafka_time(timestamp_s))


def incoming(event) -> Incoming:
    m = event.message
    return incoming_fields(m.value, m.key, m.topic, m.partition, m.offset, m.timestamp)


def hold_references(events: Sequence) -> None:
    """Take one extra reference on every message of the batch: none can be committed until ``acknowledge``."""
    for event in events:
        event.message.incref()


def acknowledge(events: Sequence) -> None:
    """Release the references ``hold_references`` took (after the batch's rows are stored)."""
    for event in events:
        event.ack()


@contextlib.contextmanager
def acknowledged_after(events: Sequence) -> Iterator[None]:
    hold_references(events)
    yield  # an exception here leaves every extra reference in place: nothing of the batch is committed
    acknowledge(events)


async def process_batches(stream, stage, size: int, within_s: float) -> None:
    """Feed a Faust stream to ``stage.process`` in micro-batches, each acknowledged only after it returned."""
    async for events in stream.take_events(size, within=within_s):
        with acknowledged_after(events):
            await stage.process([incoming(e) for e in events])


def register_agent(app, topic, name: str, fun):
    """Register ``fun`` (``async def fun(stream)``) as the agent ``name`` consuming ``topic``; a crash ends the
    worker (see the module contract)."""
    async def agent(stream):
        try:
            await fun(stream)
        except Exception as exc:  # noqa: BLE001 - a bug: the worker ends (cancellation is not an Exception)
            crashed(app, name, exc)

    agent.__doc__ = fun.__doc__
    return app.agent(topic, name=name)(agent)  # Faust's supervisor still restarts it after a rebalance's cancel


def register_task(app, name: str, fun):
    """Run ``fun()`` (a coroutine function that consumes on its own: ``streams.batch_consumer``) as a task of the
    worker, started with it and cancelled when it stops; a crash ends the worker as an agent's does."""
    async def task():
        try:
            await fun()
        except Exception as exc:  # noqa: BLE001 - a bug: the worker ends (cancellation is not an Exception)
            crashed(app, name, exc)

    task.__name__ = name
    return app.task(task)


def crashed(app, name: str, exc: BaseException) -> None:
    """Log an agent's crash and end the process at once with status 1 (see the module contract)."""
    log.critical("agent %s crashed: %s: %s; the worker exits now, committing nothing more (the group redelivers "
                 "everything since the last commit)", name, type(exc).__name__, exc, exc_info=exc)
    for handler in logging.getLogger().handlers + log.handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(1)


def producer(app, settings: Settings):
    """The app's one ``streams.batch_producer.BatchProducer``, made on first use."""
    made = getattr(app, "judgeline_producer", None)
    if made is None:
        from streams.batch_producer import BatchProducer

        made = app.judgeline_producer = BatchProducer(settings, app.conf.id)
    return made


def publisher(app, settings: Settings):
    """The stages' ``publish``: the app's producer's (see the module contract)."""
    async def publish(outbox: Outbox) -> None:
        await producer(app, settings).publish(outbox)

    return publish


async def warm_up(app, settings: Settings, store, tables: list[str], topics: list[str],
                  timeout_s: float = WARM_UP_TIMEOUT_S) -> None:
    """Connect a stage's store (``ClickHouseStore.connect_sync``: the client, the insert contexts of ``tables``) and
    the app's producer (the metadata of ``topics``) side by side before its first batch; a part that fails or takes
    longer than ``timeout_s`` is logged and left to the first batch, which connects (and holds) as it always has."""
    async def part(what: str, connect, *args) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(connect, *args), timeout_s)
        except Exception as exc:  # noqa: BLE001 - only slower: the first batch connects instead
            log.warning("warm-up: %s not reached as the worker started (%s); its first batch connects instead",
                        what, describe(exc))

    await asyncio.gather(part("the store", store.connect_sync, tables),
                         part("the broker", producer(app, settings).connect, topics, timeout_s))


def run(app, settings: Settings) -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT (Faust's worker: logging, signals, web server)."""
    import faust

    faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False).execute_from_commandline()
