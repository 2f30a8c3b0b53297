"""Migration 7 on the real store: ``verdicts`` re-keyed by the trace (one verdict per trace across judge versions).

A database is migrated to 6 (as stores in the field are), given verdicts of two judge versions for some traces, and
migrated to 7: one row per trace after FINAL, the newest judgement's, every column kept; the old table kept as
``verdicts_by_version_v1``. The migration is then interrupted after each of its statements (the statements up to that
point applied by hand, guards honoured as the runner does) and after half a copy, and ``migrate`` run again: the same
end state each time. A row written by a worker while the migration runs is kept. A second ``migrate`` applies nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from schemas.ddl import MIGRATIONS
from stack.migrate import migrate

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
UP_TO_6 = tuple(m for m in MIGRATIONS if m.version <= 6)
REKEY = next(m for m in MIGRATIONS if m.version == 7)
AFTER_6 = [m.version for m in MIGRATIONS if m.version > 6]  # the re-key (7) and the migrations released after it
COLUMNS = ["trace_id", "tenant", "app", "model", "kind", "criterion", "label", "score", "confidence", "judge_name",
           "judge_version", "source", "latency_ms", "critique", "route_reason", "trace_time", "produced_at",
           "judged_at", "stored_at", "policy_version", "route_threshold", "sample_rate", "novelty"]


def _row(trace_id, version, judged_s, label="A", *, source="inline", judge="minilm", reason="", novelty=None):
    return [trace_id, "acme", "shop", "m", "pairwise", "overall", label, 0.5, 0.7, judge, version, source, 12.5,
            "", reason, T, T - timedelta(seconds=1), T + timedelta(seconds=judged_s),
            T + timedelta(seconds=judged_s, milliseconds=40), 3, 0.8, 0.25, novelty]


# two versions of t1 (v2 judged later: it wins); t2 judged once and redelivered (``REDELIVERED``, a second insert);
# t3 judged by v2 first, then by v1 later (the newest judgement wins, not the highest version);
# t4's verdict from the frontier (the inline judge was down), then from the inline judge once it was back
ROWS = [_row("t1", "1", 1, "A", reason="low_confidence", novelty=0.5), _row("t1", "2", 2, "B"),
        _row("t2", "1", 1),
        _row("t3", "2", 3, "B"), _row("t3", "1", 4, "tie"),
        _row("t4", "gpt-4", 1, "B", source="frontier", judge="gpt-4", reason="judge_unavailable"),
        _row("t4", "2", 5, "A")]
REDELIVERED = [_row("t2", "1", 1)]
NEWEST = {"t1": ("2", "B", ""), "t2": ("1", "A", ""), "t3": ("1", "tie", ""), "t4": ("2", "A", "")}


@pytest.fixture
def at_six(stack):
    """A client and a fresh database migrated to 6 holding ``ROWS``; dropped after."""
    from streams.clickhouse import connect

    client = connect(stack)
    made: list[str] = []

    def make() -> str:
        db = f"rk_{uuid.uuid4().hex[:10]}"
        made.append(db)
        assert migrate(client, db, UP_TO_6).applied == [1, 2, 4, 5, 6]
        client.insert(f"{db}.verdicts", ROWS, column_names=COLUMNS)
        client.insert(f"{db}.verdicts", REDELIVERED, column_names=COLUMNS)
        return db

    yield client, make
    for db in made:
        client.command(f"DROP DATABASE IF EXISTS {db}")


def _state(client, db: str) -> dict:
    def q(sql: str) -> list[tuple]:
        return client.query(sql.replace("{db}", db)).result_rows

    return {
        "rows": q(f"SELECT {', '.join(COLUMNS)}, routed FROM {{db}}.verdicts FINAL ORDER BY trace_id"),
        "latest": q("SELECT trace_id, judge_version, label, routed, policy_version, novelty "
                    "FROM {db}.verdicts_latest ORDER BY trace_id"),
        "sorting_key": q("SELECT name, sorting_key FROM system.tables WHERE database = '{db}' "
                         "AND name LIKE 'verdicts%' AND engine = 'ReplacingMergeTree' ORDER BY name"),
        "kept": q("SELECT count() FROM {db}.verdicts_by_version_v1 FINAL")[0][0],
        "migrations": q("SELECT version FROM {db}.schema_migrations FINAL ORDER BY version"),
    }


def _apply_by_hand(client, db: str, steps) -> None:
    for condition, statement in steps:
        if condition is None or client.query(condition).result_rows[0][0]:
            client.command(statement)


@pytest.fixture
def reference(at_six):
    client, make = at_six
    db = make()
    before = client.query(f"SELECT count() FROM {db}.verdicts").result_rows[0][0]
    assert migrate(client, db).applied == AFTER_6
    return before, _state(client, db)


def test_rekey_keeps_one_verdict_per_trace_the_newest(reference):
    before, state = reference
    assert before == len(ROWS) + 1
    got = {r[0]: (r[COLUMNS.index("judge_version")], r[COLUMNS.index("label")], r[COLUMNS.index("route_reason")])
           for r in state["rows"]}
    assert got == NEWEST and len(state["rows"]) == 4
    t1 = dict(zip(COLUMNS + ["routed"], state["rows"][0]))
    # every column copied as stored (stored_at too: the produce-to-stored latency stays what it was)
    assert t1["stored_at"].replace(tzinfo=timezone.utc) == T + timedelta(seconds=2, milliseconds=40)
    assert t1["policy_version"] == 3
    assert (t1["route_threshold"], t1["sample_rate"], t1["routed"]) == (pytest.approx(0.8), 0.25, False)
    assert dict(zip(COLUMNS + ["routed"], state["rows"][3]))["source"] == "inline"
    assert [r[:3] for r in state["latest"]] == [(t, v, label) for t, (v, label, _) in sorted(NEWEST.items())]
    assert state["sorting_key"] == [("verdicts", "tenant, app, criterion, trace_id"),
                                    ("verdicts_by_version_v1",
                                     "tenant, app, criterion, trace_id, judge_name, judge_version")]
    assert state["kept"] == 7, "the old table keeps every (trace, version) row it had"
    assert state["migrations"] == [(v,) for v in (1, 2, 4, 5, 6, *AFTER_6)]


def test_a_second_migrate_applies_nothing_and_new_writes_follow_the_new_key(at_six):
    client, make = at_six
    db = make()
    assert migrate(client, db).applied == AFTER_6
    assert migrate(client, db).applied == []
    # a redelivery across a deploy now replaces the trace's verdict whatever the version
    client.insert(f"{db}.verdicts", [_row("t2", "3", 9, "B")], column_names=COLUMNS)
    assert client.query(f"SELECT judge_version, label FROM {db}.verdicts FINAL WHERE trace_id = 't2'"
                        ).result_rows == [("3", "B")]


@pytest.mark.parametrize("done", range(len(REKEY.statements) + 1))
def test_an_interrupted_rekey_ends_in_the_same_state(at_six, reference, done):
    client, make = at_six
    db = make()
    _apply_by_hand(client, db, REKEY.steps(db)[:done])
    assert migrate(client, db).applied == AFTER_6
    assert _state(client, db) == reference[1]


def test_a_copy_interrupted_half_way_is_done_again_whole(at_six, reference):
    client, make = at_six
    db = make()
    steps = REKEY.steps(db)
    _apply_by_hand(client, db, steps[:2])  # the new table made and swapped in; nothing copied yet
    client.command(f"INSERT INTO {db}.verdicts ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
                   f"FROM {db}.verdicts_rekey_swap FINAL ORDER BY trace_id LIMIT 2")
    assert migrate(client, db).applied == AFTER_6
    assert _state(client, db) == reference[1]


def test_a_verdict_written_while_the_migration_runs_is_kept(at_six):
    """Workers may write between the swap and the copy: their newer judgement wins over the copied one."""
    client, make = at_six
    db = make()
    steps = REKEY.steps(db)
    _apply_by_hand(client, db, steps[:2])
    client.insert(f"{db}.verdicts", [_row("t1", "3", 30, "tie"), _row("t9", "3", 30)], column_names=COLUMNS)
    assert migrate(client, db).applied == AFTER_6
    rows = {t: (v, label) for t, v, label in client.query(
        f"SELECT trace_id, judge_version, label FROM {db}.verdicts FINAL").result_rows}
    assert rows == {"t1": ("3", "tie"), "t2": ("1", "A"), "t3": ("1", "tie"), "t4": ("2", "A"), "t9": ("3", "A")}


def test_a_new_store_keeps_no_old_table(stack):
    from streams.clickhouse import connect

    client = connect(stack)
    db = f"rk_{uuid.uuid4().hex[:10]}"
    try:
        migrate(client, db)
        names = {r[0] for r in client.query(f"SELECT name FROM system.tables WHERE database = '{db}'").result_rows}
        assert "verdicts" in names and not {"verdicts_by_version_v1", "verdicts_rekey_swap"} & names
        (key,), = client.query(f"SELECT sorting_key FROM system.tables WHERE database = '{db}' "
                               "AND name = 'verdicts'").result_rows
        assert key == "tenant, app, criterion, trace_id"
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db}")
