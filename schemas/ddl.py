"""ClickHouse DDL as versioned migrations (text only; ``stack/migrate.py`` applies them).

Contract:
- ``MIGRATIONS`` is append-only: a migration, once released, never changes (its checksum is recorded when it is
  applied and checked on every later run). Fix a table with a new migration (``ALTER TABLE ... ADD COLUMN``).
- Every statement is idempotent (``IF NOT EXISTS``), so a migration interrupted half-way is safe to re-run. A
  statement that cannot be (``RENAME``, ``EXCHANGE``, a copy) is ``Guarded``: it runs only while its condition query
  answers non-zero, a condition on the store's own state (``system.tables``) that the statement itself makes false.
  A guard is part of the migration's checksum; migrations without guards hash as they always did.
- ``{db}`` in a statement is the configured database (a validated identifier).
- Writes are idempotent under redelivery: each table is a ReplacingMergeTree whose sort key is the row's identity
  (the trace for verdicts, whatever judge version gave it, since migration 7; topic/partition/offset for dead
  letters), partitioned by the day of an
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
class Guarded:
    """A statement that runs only when ``when`` (a query answering one number) answers non-zero."""

    when: str
    statement: str

    @property
    def text(self) -> str:
        return f"-- when: {self.when}\n{self.statement}"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str | Guarded, ...]

    @property
    def checksum(self) -> str:
        texts = (s.text if isinstance(s, Guarded) else s for s in self.statements)
        return hashlib.sha256("\n;\n".join(texts).encode()).hexdigest()[:16]

    def steps(self, database: str) -> list[tuple[str | None, str]]:
        """(condition or None, statement) per statement, for ``database``."""
        return [(s.when.replace("{db}", database), s.statement.replace("{db}", database)) if isinstance(s, Guarded)
                else (None, s.replace("{db}", database)) for s in self.statements]

    def render(self, database: str) -> list[str]:
        """The statements' text for ``database``, guards left out."""
        return [statement for _, statement in self.steps(database)]


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

# One inline verdict per trace (issue 12, point 3; docs/reliability.md). Until now ``verdicts`` was keyed with the
# judge's name and version, so a batch redelivered across ``judgeline deploy`` left the trace a verdict from each
# version. It is now keyed by the trace alone (tenant, app, criterion, trace_id); the judge's name and version are
# plain columns and ReplacingMergeTree(judged_at) keeps the newest judgement. (Migration 3 was reserved for this
# and never released: the number stays unused, and this comes after 4, 5 and 6, which stores already have.)
# ClickHouse cannot drop sort-key columns, so the table is rebuilt. Safe to re-run after an interruption at any
# statement, and safe while workers write (no moment without a ``verdicts`` table):
# 1. an empty table with the new key is created beside the old one;
# 2. EXCHANGE TABLES swaps the two atomically: writers go on into the new (empty) table from then on;
# 3. the old rows (``FINAL``) are copied into it, stored_at kept; a row written meanwhile was judged later, so
#    ReplacingMergeTree(judged_at) keeps it over the copied one of its trace;
# 4. the old table is kept as ``verdicts_by_version_v1`` when it holds rows (nothing is destroyed by a migration:
#    the superseded versions' verdicts stay readable; ``DROP TABLE <db>.verdicts_by_version_v1`` once checked) and
#    dropped when empty (a new store);
# 5. ``verdicts_latest`` is created again (a view's columns are fixed at creation).
# Steps 1 to 4 are ``Guarded`` on the sort key ``system.tables`` reports, which each of them changes.
_VERDICTS_COLUMNS = """trace_id, tenant, app, model, kind, criterion, label, score, confidence, judge_name,
        judge_version, source, latency_ms, critique, route_reason, trace_time, produced_at, judged_at, stored_at,
        policy_version, route_threshold, sample_rate, novelty"""


def _keyed_by_version(table: str, also: str = "") -> str:
    return ("SELECT count() FROM system.tables WHERE database = '{db}' AND name = '" + table
            + "' AND position(sorting_key, 'judge_version') > 0" + also)


_V7 = (
    Guarded(_keyed_by_version("verdicts"), """CREATE TABLE IF NOT EXISTS {db}.verdicts_rekey_swap (
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
        stored_at DateTime64(3, 'UTC') DEFAULT now64(3),
        policy_version UInt32 DEFAULT 0,
        route_threshold Nullable(Float32),
        sample_rate Nullable(Float32),
        novelty Nullable(Float32)
    ) ENGINE = ReplacingMergeTree(judged_at)
    PARTITION BY toDate(trace_time)
    ORDER BY (tenant, app, criterion, trace_id)"""),
    Guarded(_keyed_by_version("verdicts"), "EXCHANGE TABLES {db}.verdicts AND {db}.verdicts_rekey_swap"),
    Guarded(_keyed_by_version("verdicts_rekey_swap"),
            f"""INSERT INTO {{db}}.verdicts ({_VERDICTS_COLUMNS})
    SELECT {_VERDICTS_COLUMNS}
    FROM {{db}}.verdicts_rekey_swap FINAL"""),
    Guarded(_keyed_by_version("verdicts_rekey_swap", " AND total_rows > 0"),
            "RENAME TABLE {db}.verdicts_rekey_swap TO {db}.verdicts_by_version_v1"),
    "DROP TABLE IF EXISTS {db}.verdicts_rekey_swap",
    "DROP VIEW IF EXISTS {db}.verdicts_latest",
    "CREATE VIEW IF NOT EXISTS {db}.verdicts_latest AS SELECT *, routed FROM {db}.verdicts FINAL",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core tables", _V1),
    Migration(2, "analytics views", _V2),
    Migration(4, "routing policies, drift alarms, routing columns of verdicts", _V4),
    Migration(5, "judge versions and their gate decisions", _V5),
    Migration(6, "routed traces for the annotation queue", _V6),
    Migration(7, "verdicts keyed by the trace: one verdict per trace across judge versions", _V7),
)

TABLES = ("verdicts", "frontier_verdicts", "disagreements", "gold_labels", "dead_letters", "routing_policies",
          "drift_alarms", "judge_versions", "traces")
VIEWS = ("verdicts_latest", "frontier_verdicts_latest", "disagreements_latest", "gold_labels_latest", "gold_by_id",
         "routing_policies_latest", "drift_alarms_latest", "judge_versions_latest", "traces_latest",
         "dead_letters_latest")
