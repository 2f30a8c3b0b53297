"""ClickHouse through the embedded store server (HTTP, the production client) and chDB in process."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from schemas.ddl import MIGRATIONS, TABLES, VIEWS, Migration
from stack.migrate import MigrationDrift, migrate

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def test_migrations_create_every_table_and_are_idempotent(store):
    client, settings = store
    db = settings.clickhouse.database
    tables = {r[0]: r[1] for r in client.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String}", parameters={"db": db}).result_rows}
    assert set(TABLES) <= set(tables)
    assert all(tables[t] == "ReplacingMergeTree" for t in TABLES)
    again = migrate(client, db)
    assert again.applied == [] and again.already == [m.version for m in MIGRATIONS]
    assert client.query(f"SELECT count() FROM {db}.schema_migrations FINAL").result_rows == [(len(MIGRATIONS),)]


def test_a_new_migration_applies_once_and_an_edited_one_is_refused(store):
    client, settings = store
    db = settings.clickhouse.database
    extra = Migration(99, "test column", ("ALTER TABLE {db}.verdicts ADD COLUMN IF NOT EXISTS note String DEFAULT ''",))
    assert migrate(client, db, MIGRATIONS + (extra,)).applied == [99]
    assert migrate(client, db, MIGRATIONS + (extra,)).applied == []
    edited = Migration(99, "test column", ("ALTER TABLE {db}.verdicts ADD COLUMN IF NOT EXISTS note2 String",))
    with pytest.raises(MigrationDrift, match="migration 99"):
        migrate(client, db, MIGRATIONS + (edited,))


def _verdict_row(trace_id, judged_at, label="A"):
    return [trace_id, "acme", "shop", "m", "pairwise", "overall", label, 0.9, 0.9, "minilm", "1", "inline",
            10.0, "", "", NOW, None, judged_at]


VERDICT_COLUMNS = ["trace_id", "tenant", "app", "model", "kind", "criterion", "label", "score", "confidence",
                   "judge_name", "judge_version", "source", "latency_ms", "critique", "route_reason",
                   "trace_time", "produced_at", "judged_at"]


def test_redelivered_verdicts_collapse_to_one_row(store):
    client, settings = store
    table = f"{settings.clickhouse.database}.verdicts"
    client.insert(table, [_verdict_row("t1", NOW), _verdict_row("t2", NOW)], column_names=VERDICT_COLUMNS)
    # the same traces again (a redelivery after a crash), the later judgement winning
    client.insert(table, [_verdict_row("t1", NOW + timedelta(seconds=1), "B")], column_names=VERDICT_COLUMNS)
    rows = client.query(f"SELECT trace_id, label FROM {table} FINAL ORDER BY trace_id").result_rows
    assert rows == [("t1", "B"), ("t2", "A")]
    assert client.query(f"SELECT count() FROM {table}").result_rows[0][0] >= 2
    routed = client.query(f"SELECT countIf(routed) FROM {table} FINAL").result_rows[0][0]
    assert routed == 0


def test_parameters_keep_hostile_strings_as_data(store):
    client, settings = store
    table = f"{settings.clickhouse.database}.verdicts"
    hostile = "x'); DROP TABLE verdicts; --"
    client.insert(table, [_verdict_row(hostile, NOW)], column_names=VERDICT_COLUMNS)
    got = client.query(f"SELECT trace_id FROM {table} WHERE trace_id = {{t:String}}", parameters={"t": hostile})
    assert got.result_rows == [(hostile,)]


def test_store_errors_reach_the_client_with_the_engine_message(store):
    client, settings = store
    with pytest.raises(Exception, match="UNKNOWN_TABLE|does not exist"):
        client.query(f"SELECT * FROM {settings.clickhouse.database}.no_such_table")


def test_an_insert_of_many_blocks_keeps_every_row(store):
    """clickhouse-connect compresses an insert block by block (one lz4 frame each): the store must decode them all.
    Before the fix 12 dead letters of 300 KB stored 8, without an error (issue 12's hostile-records run)."""
    from judge_engine.online.pipeline import Incoming, Rows, dead_letter
    from streams.sink import ClickHouseStore

    client, settings = store
    sink = ClickHouseStore(settings)
    try:
        letters = [dead_letter(Incoming(value=bytes([65 + o]) * 300_000, key=None, topic="blocks", partition=0,
                                        offset=o), "e", "parse") for o in range(12)]
        sink.write_sync(Rows(dead_letters=letters))
    finally:
        sink.close()
    rows = client.query(f"SELECT offset, length(raw), substring(raw, 1, 1) FROM {settings.clickhouse.database}"
                        ".dead_letters WHERE topic = 'blocks' ORDER BY offset").result_rows
    assert rows == [(o, 300_000, chr(65 + o)) for o in range(12)]


def test_a_body_of_several_lz4_frames_is_decoded_whole_over_plain_http(store):
    import urllib.error
    import urllib.parse
    import urllib.request

    import lz4.frame

    client, settings = store
    db = settings.clickhouse.database
    from streams.clickhouse import resolve_dsn

    base = resolve_dsn(settings).rstrip("/")
    assert base.startswith("http://"), base
    sql = f"INSERT INTO {db}.dead_letters (topic, partition, offset, stage, error, raw, message_time, " \
          "received_at) FORMAT TSV"
    lines = [f"frames\t0\t{o}\tparse\te\t{'r' * 10}\t2026-11-01 00:00:00\t2026-11-01 00:00:00\n".encode()
             for o in range(3)]
    body = b"".join(lz4.frame.compress(line) for line in lines)
    request = urllib.request.Request(f"{base}/?query={urllib.parse.quote(sql)}", data=body, method="POST",
                                     headers={"Content-Encoding": "lz4"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200
    got = client.query(f"SELECT count() FROM {db}.dead_letters WHERE topic = 'frames'").result_rows
    assert got == [(3,)]
    truncated = urllib.request.Request(f"{base}/?query={urllib.parse.quote(sql)}", data=body[:-3], method="POST",
                                       headers={"Content-Encoding": "lz4"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(truncated, timeout=30)
    assert e.value.code == 400 and b"truncated" in e.value.read()


def test_migrate_command_on_chdb_in_process(tmp_path):
    """`judgeline migrate` with a chdb:///path DSN and no store server opens the path itself (own process)."""
    env = {**os.environ, "JUDGELINE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'ch'}",
           "JUDGELINE_STACK__STATE_DIR": str(tmp_path / "state")}
    cmd = [sys.executable, "-m", "cli.main", "migrate"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root, timeout=120)
    assert first.returncode == 0, first.stderr
    applied = ", ".join(str(m.version) for m in MIGRATIONS)
    assert "chDB in process" in first.stdout and f"applied {applied};" in first.stdout
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root, timeout=120)
    assert second.returncode == 0 and "applied none" in second.stdout
    check = subprocess.run(
        [sys.executable, "-c", "import chdb, sys; c = chdb.connect(sys.argv[1]); "
         "print(c.query(\"SELECT groupArray(name) FROM (SELECT name FROM system.tables WHERE database='judgeline' ORDER BY name)\", 'JSONEachRow').bytes().decode())",
         str(tmp_path / "ch")], capture_output=True, text=True, timeout=120)
    names = json.loads(check.stdout)["groupArray(name)"]
    assert set(TABLES) | set(VIEWS) | {"schema_migrations"} == set(names)


def test_a_rejected_insert_body_stores_nothing_answers_the_engine_code_and_the_next_insert_works(store):
    """The body goes to chDB's streaming insert (issue 13): a row the engine rejects cancels the insert (no row of it
    is stored), the client gets the engine's ``Code: N`` and the statement's code, and the engine takes the next
    statement (an insert left open would refuse every later one)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    client, settings = store
    db = settings.clickhouse.database
    from streams.clickhouse import resolve_dsn

    base = resolve_dsn(settings).rstrip("/")
    sql = f"INSERT INTO {db}.dead_letters (topic, partition, offset, stage, error, raw, message_time, " \
          "received_at) FORMAT TSV"
    good = "rejected\t0\t{o}\tparse\te\traw\t2026-11-01 00:00:00\t2026-11-01 00:00:00\n"
    bad = "rejected\tnot-a-number\t9\tparse\te\traw\t2026-11-01 00:00:00\t2026-11-01 00:00:00\n"

    def post(body: str):
        request = urllib.request.Request(f"{base}/?query={urllib.parse.quote(sql)}", data=body.encode(),
                                         method="POST")
        return urllib.request.urlopen(request, timeout=30)

    with pytest.raises(urllib.error.HTTPError) as e:
        post(good.format(o=0) + bad)
    message = e.value.read().decode()
    assert e.value.code == 500 and "Code: " in message, message
    code = e.value.headers["X-ClickHouse-Exception-Code"]
    assert code.isdigit() and code != "1000" and f"Code: {code}." in message, (code, message)
    assert client.query(f"SELECT count() FROM {db}.dead_letters WHERE topic = 'rejected'").result_rows == [(0,)]
    with post(good.format(o=1) + good.format(o=2)) as r:
        assert r.status == 200
        assert json.loads(r.headers["X-ClickHouse-Summary"])["written_rows"] == "2"
    rows = client.query(f"SELECT offset FROM {db}.dead_letters WHERE topic = 'rejected' ORDER BY offset").result_rows
    assert rows == [(1,), (2,)]


def test_the_store_server_writes_small_parts_packed(store):
    """stack/store_server.xml: an insert's part is one archive (packed storage), the cheaper part write of issue 13;
    its rows read back as from any part."""
    client, settings = store
    db = settings.clickhouse.database
    client.insert(f"{db}.verdicts", [_verdict_row("packed-1", NOW), _verdict_row("packed-2", NOW)],
                  column_names=VERDICT_COLUMNS)
    kinds = client.query("SELECT DISTINCT part_storage_type FROM system.parts WHERE database = {db:String} "
                         "AND table = 'verdicts' AND active", parameters={"db": db}).result_rows
    assert kinds == [("Packed",)]
    got = client.query(f"SELECT trace_id FROM {db}.verdicts FINAL WHERE trace_id LIKE 'packed-%' ORDER BY trace_id")
    assert got.result_rows == [("packed-1",), ("packed-2",)]
