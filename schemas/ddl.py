"""ClickHouse DDL as versioned migrations (text only; ``stack/migrate.py`` applies them).

Contract:
- ``MIGRATIONS`` is append-only: a migration, once released, never changes (its checksum is recorded when it is
  applied and checked on every later run). Fix a table with a new migration (``ALTER TABLE ... ADD COLUMN``).
- Every statement is idempotent (``IF NOT EXISTS``), so a migration interrupted half-way is safe to re-run.
- ``{db}`` in a statement is the configured database (a validated identifier).
- Writes are idempotent under redelivery: each table is a ReplacingMergeTree whose sort key is the row's identity
  (trace and judge version for verdicts; topic/partition/offset for dead letters), partitioned by the day of an
  attribute of the message itself (never of the time it was stored), so a redelivered row lands in the same
  partition and replaces its twin. Read with ``FINAL`` (or the ``*_latest`` views) for exact counts.
- Sort keys lead with the columns analytics filter on (tenant, app, criterion); enums are ``LowCardinality``;
  timestamps are ``DateTime64(3, 'UTC')``. The same statements run on the embedded chDB engine and on a server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        return hashlib.sha256("\n;\n".join(self.statements).encode()).hexdigest()[:16]

    def render(self, database: str) -> list[str]:
        return [s.replace("{db}", database) for s in self.statements]


def bootstrap_statements(database: str) -> list[str]:
    """The database and the bookkeeping table, created before any migration runs."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"""CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS_TABLE} (
            version UInt32,
            name String,
            checksum String,
            applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree(applied_at) ORDER BY version""",
    ]


_V1 = (
    """CREATE TABLE IF NOT EXISTS {db}.verdicts (
        trace_id String,
        tenant LowCardinality(String),
        app LowCardinality(String),
        model LowCardinality(String),
        kind LowCardinality(String),
        criterion LowCardinality(String),
        label LowCardinality(String),
        score Float32,
        confidence Float32,
        judge_name LowCardinality(String),
        judge_version LowCardinality(String),
        source LowCardinality(String),
        latency_ms Float32,
        critique String,
        route_reason LowCardinality(String),
        routed Bool MATERIALIZED route_reason != '',
        trace_time DateTime64(3, 'UTC'),
        produced_at Nullable(DateTime64(3, 'UTC')),
        judged_at DateTime64(3, 'UTC'),
        stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(judged_at)
    PARTITION BY toDate(trace_time)
    ORDER BY (tenant, app, criterion, trace_id, judge_name, judge_version)""",
    """CREATE TABLE IF NOT EXISTS {db}.frontier_verdicts (
        trace_id String,
        tenant LowCardinality(String),
        app LowCardinality(String),
        kind LowCardinality(String),
        criterion LowCardinality(String),
        judge_name LowCardinality(String),
        status LowCardinality(String),
        label LowCardinality(String),
        label_swapped LowCardinality(String),
        confidence Float32,
        critique String,
        error String,
        request_reason LowCardinality(String),
        inline_label LowCardinality(String),
        inline_judge_version LowCardinality(String),
        input_tokens UInt32,
        output_tokens UInt32,
        cost_usd Float64,
        attempts UInt16,
        latency_ms Float32,
        trace_time DateTime64(3, 'UTC'),
        judged_at DateTime64(3, 'UTC'),
        stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(judged_at)
    PARTITION BY toDate(trace_time)
    ORDER BY (tenant, app, criterion, trace_id, judge_name)""",
    """CREATE TABLE IF NOT EXISTS {db}.disagreements (
        trace_id String,
        tenant LowCardinality(String),
        app LowCardinality(String),
        kind LowCardinality(String),
        criterion LowCardinality(String),
        inline_label LowCardinality(String),
        inline_confidence Float32,
        inline_judge_version LowCardinality(String),
        frontier_label LowCardinality(String),
        frontier_judge LowCardinality(String),
        request_reason LowCardinality(String),
        trace_time DateTime64(3, 'UTC'),
        detected_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(detected_at)
    PARTITION BY toDate(trace_time)
    ORDER BY (criterion, inline_judge_version, tenant, app, trace_id, frontier_judge)""",
    """CREATE TABLE IF NOT EXISTS {db}.gold_labels (
        id String,
        source LowCardinality(String),
        kind LowCardinality(String),
        criterion LowCardinality(String),
        question String,
        answer Nullable(String),
        answer_a Nullable(String),
        answer_b Nullable(String),
        reference Nullable(String),
        human_label LowCardinality(String),
        teacher Map(String, String),
        teacher_swapped Map(String, String),
        meta String,
        imported_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(imported_at)
    PARTITION BY kind
    ORDER BY (source, criterion, id)""",
    """CREATE TABLE IF NOT EXISTS {db}.dead_letters (
        topic LowCardinality(String),
        partition UInt32,
        offset UInt64,
        stage LowCardinality(String),
        error String,
        raw String,
        key Nullable(String),
        message_time DateTime64(3, 'UTC'),
        received_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(received_at)
    PARTITION BY toDate(message_time)
    ORDER BY (topic, partition, offset)""",
)

# Views for analytics (docs/analytics.md): each ``*_latest`` reads its table with FINAL, so a redelivered row is
# counted once without the reader having to remember; ``gold_by_id`` is one human label per (criterion, id) whatever
# the source it was imported under (the newest import wins), the join key of verdicts (trace_id = gold id).
# No aggregating materialized views: they would count a redelivered row twice (an insert trigger sees every copy),
# while FINAL on the ReplacingMergeTrees is exact.
_V2 = (
    "CREATE VIEW IF NOT EXISTS {db}.verdicts_latest AS SELECT *, routed FROM {db}.verdicts FINAL",
    "CREATE VIEW IF NOT EXISTS {db}.frontier_verdicts_latest AS SELECT * FROM {db}.frontier_verdicts FINAL",
    "CREATE VIEW IF NOT EXISTS {db}.disagreements_latest AS SELECT * FROM {db}.disagreements FINAL",
    "CREATE VIEW IF NOT EXISTS {db}.gold_labels_latest AS SELECT * FROM {db}.gold_labels FINAL",
    """CREATE VIEW IF NOT EXISTS {db}.gold_by_id AS
    SELECT id, criterion, argMax(g.source, g.imported_at) AS source, argMax(g.kind, g.imported_at) AS kind,
           argMax(g.human_label, g.imported_at) AS human_label, max(g.imported_at) AS imported_at
    FROM {db}.gold_labels AS g FINAL
    WHERE g.human_label != ''
    GROUP BY id, criterion""",
)

# Routing from live evidence (issue 15, docs/routing.md): the versioned routing policies with the evidence behind each
# rule, the drift alarms, and on every verdict the policy version, the segment's threshold and calibration sample
# rate it was routed under (the controller weights a calibration-sample verdict by 1 / that rate) and its novelty
# score. Old verdicts keep policy_version 0 and NULL threshold/rate/novelty ("not recorded"). A view's columns are
# fixed when it is created, so ``verdicts_latest`` is created again to show the new columns.
_V4 = (
    """CREATE TABLE IF NOT EXISTS {db}.routing_policies (
        version UInt32,
        scope LowCardinality(String),
        reason LowCardinality(String),
        judge_version LowCardinality(String),
        rules UInt32,
        policy String,
        evidence String,
        created_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(created_at)
    PARTITION BY toYYYYMM(created_at)
    ORDER BY (scope, version)""",
    """CREATE TABLE IF NOT EXISTS {db}.drift_alarms (
        segment String,
        tenant LowCardinality(String),
        app LowCardinality(String),
        kind LowCardinality(String),
        criterion LowCardinality(String),
        statistic Float64,
        threshold Float64,
        observations UInt32,
        policy_version UInt32,
        action LowCardinality(String),
        detail String,
        detected_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(detected_at)
    PARTITION BY toYYYYMM(detected_at)
    ORDER BY (tenant, app, criterion, kind, segment, policy_version)""",
    "ALTER TABLE {db}.verdicts ADD COLUMN IF NOT EXISTS policy_version UInt32 DEFAULT 0",
    "ALTER TABLE {db}.verdicts ADD COLUMN IF NOT EXISTS route_threshold Nullable(Float32)",
    "ALTER TABLE {db}.verdicts ADD COLUMN IF NOT EXISTS sample_rate Nullable(Float32)",
    "ALTER TABLE {db}.verdicts ADD COLUMN IF NOT EXISTS novelty Nullable(Float32)",
    "DROP VIEW IF EXISTS {db}.verdicts_latest",
    "CREATE VIEW IF NOT EXISTS {db}.verdicts_latest AS SELECT *, routed FROM {db}.verdicts FINAL",
    "CREATE VIEW IF NOT EXISTS {db}.routing_policies_latest AS SELECT * FROM {db}.routing_policies FINAL",
    "CREATE VIEW IF NOT EXISTS {db}.drift_alarms_latest AS SELECT * FROM {db}.drift_alarms FINAL",
)

# Judge versions (issue 16): every deployment-gate decision on a trained judge, with the figures it was made on:
# the training's held-out figures, kappa on the gold labels of this store (the candidate's and the serving
# version's on the same items), the bias meters, and the decision (accepted | refused | forced) with its reasons.
# One row per decision (a refusal then a forced export are two rows); a rewritten record replaces its twin.
_V5 = (
    """CREATE TABLE IF NOT EXISTS {db}.judge_versions (
        judge_name LowCardinality(String),
        version String,
        action LowCardinality(String),
        model_dir String,
        arch LowCardinality(String),
        teacher String,
        created_at DateTime64(3, 'UTC'),
        held_out String,
        gold_n UInt32,
        gold_accuracy Nullable(Float64),
        gold_kappa Nullable(Float64),
        serving_version String,
        compared_n UInt32,
        candidate_kappa_compared Nullable(Float64),
        serving_kappa_compared Nullable(Float64),
        longer_wins Nullable(Float64),
        first_wins Nullable(Float64),
        shorter_won_accuracy Nullable(Float64),
        teacher_longer_wins Nullable(Float64),
        human_longer_wins Nullable(Float64),
        bias String,
        decision LowCardinality(String),
        reasons String,
        decided_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(decided_at)
    PARTITION BY toYYYYMM(decided_at)
    ORDER BY (judge_name, version, decided_at)""",
    "CREATE VIEW IF NOT EXISTS {db}.judge_versions_latest AS SELECT * FROM {db}.judge_versions FINAL",
)

# The traces routed to the frontier (low confidence, calibration sample, judge unavailable), with their text: what
# the annotation queue (``judgeline annotate``) shows a person. Stored by the inline stage with the trace's verdict;
# a redelivered trace replaces its twin. Human labels from the queue go to gold_labels (source ``annotation:<name>``,
# so two people's labels of one trace are two rows; the annotator, note and time in ``meta``). ``dead_letters_latest``
# is what the report's headline counts.
_V6 = (
    """CREATE TABLE IF NOT EXISTS {db}.traces (
        trace_id String,
        span_id String,
        timestamp DateTime64(3, 'UTC'),
        tenant LowCardinality(String),
        app LowCardinality(String),
        model LowCardinality(String),
        kind LowCardinality(String),
        criterion LowCardinality(String),
        question String,
        answer Nullable(String),
        answer_a Nullable(String),
        answer_b Nullable(String),
        reference Nullable(String),
        context Nullable(String),
        metadata String,
        stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(stored_at)
    PARTITION BY toDate(timestamp)
    ORDER BY (tenant, app, criterion, trace_id)""",
    "CREATE VIEW IF NOT EXISTS {db}.traces_latest AS SELECT * FROM {db}.traces FINAL",
    "CREATE VIEW IF NOT EXISTS {db}.dead_letters_latest AS SELECT * FROM {db}.dead_letters FINAL",
)

# Shadow mode (issue 16, docs/judge.md "Shadow mode"): a candidate judge version's verdicts on live traces, apart from
# the traces' verdicts (never routed, never counted as verdicts), each with the live inline verdict of the trace at
# that time (its version, label, confidence and latency; '' / NULL when the trace got none). One row per trace and
# candidate version: a redelivered trace judged again replaces its twin.
_V8 = (
    """CREATE TABLE IF NOT EXISTS {db}.shadow_verdicts (
        trace_id String,
        tenant LowCardinality(String),
        app LowCardinality(String),
        kind LowCardinality(String),
        criterion LowCardinality(String),
        label LowCardinality(String),
        score Float32,
        confidence Float32,
        judge_name LowCardinality(String),
        judge_version LowCardinality(String),
        latency_ms Float32,
        live_judge_version LowCardinality(String),
        live_label LowCardinality(String),
        live_confidence Nullable(Float32),
        live_latency_ms Nullable(Float32),
        trace_time DateTime64(3, 'UTC'),
        judged_at DateTime64(3, 'UTC'),
        stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(judged_at)
    PARTITION BY toDate(trace_time)
    ORDER BY (tenant, app, criterion, trace_id, judge_version)""",
    "CREATE VIEW IF NOT EXISTS {db}.shadow_verdicts_latest AS SELECT * FROM {db}.shadow_verdicts FINAL",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core tables", _V1),
    Migration(2, "analytics views", _V2),
    Migration(4, "routing policies, drift alarms, routing columns of verdicts", _V4),
    Migration(5, "judge versions and their gate decisions", _V5),
    Migration(6, "routed traces for the annotation queue", _V6),
    Migration(8, "shadow verdicts of candidate judge versions", _V8),
)

TABLES = ("verdicts", "frontier_verdicts", "disagreements", "gold_labels", "dead_letters", "routing_policies",
          "drift_alarms", "judge_versions", "traces",
          "shadow_verdicts")
VIEWS = ("verdicts_latest", "frontier_verdicts_latest", "disagreements_latest", "gold_labels_latest", "gold_by_id",
         "routing_policies_latest", "drift_alarms_latest", "judge_versions_latest", "traces_latest",
         "dead_letters_latest", "shadow_verdicts_latest")
