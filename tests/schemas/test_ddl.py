"""Migrations as text: append-only versions, idempotent statements, the design rules of the tables."""

import re

from schemas.ddl import MIGRATIONS, TABLES, Guarded, Migration, bootstrap_statements


def test_versions_are_unique_and_increasing():
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_every_statement_is_idempotent_and_uses_the_database_placeholder():
    for m in MIGRATIONS:
        for s in m.statements:
            if isinstance(s, Guarded):  # idempotent through its guard: a query on the store's own state
                assert s.when.startswith("SELECT count() FROM system.tables WHERE database = '{db}'"), s.when
                assert "{db}." in s.statement
                continue
            assert re.search(r"IF NOT EXISTS|IF EXISTS", s), s[:80]
            assert "{db}." in s
    assert all("IF NOT EXISTS" in s for s in bootstrap_statements("x"))


def test_released_migrations_keep_their_checksums():
    """What stores in the field recorded when they applied 1..6: a guard added to the runner changes none."""
    assert {m.version: m.checksum for m in MIGRATIONS if m.version <= 6} == {
        1: "3f90500c9afc6cec", 2: "10d98c1414187ae6", 4: "602570e1a3c3ce59", 5: "72d374630cb0b98d",
        6: "587e559c990b74b5"}
    assert 3 not in {m.version for m in MIGRATIONS}, "3 was reserved and never released: it stays unused"


def test_a_guard_is_part_of_the_checksum_and_rendered_for_the_database():
    plain = Migration(99, "x", ("DROP TABLE IF EXISTS {db}.t",))
    guarded = Migration(99, "x", (Guarded("SELECT 1", "DROP TABLE IF EXISTS {db}.t"),))
    other = Migration(99, "x", (Guarded("SELECT 0", "DROP TABLE IF EXISTS {db}.t"),))
    assert len({plain.checksum, guarded.checksum, other.checksum}) == 3
    assert guarded.steps("d") == [("SELECT 1", "DROP TABLE IF EXISTS d.t")] and plain.steps("d") == [
        (None, "DROP TABLE IF EXISTS d.t")]
    assert guarded.render("d") == plain.render("d") == ["DROP TABLE IF EXISTS d.t"]


def test_verdicts_end_keyed_by_the_trace():
    rekey = next(m for m in MIGRATIONS if m.version == 7).render("db")
    created = next(s for s in rekey if s.startswith("CREATE TABLE"))
    assert created.rstrip().endswith("ORDER BY (tenant, app, criterion, trace_id)")
    assert "ReplacingMergeTree(judged_at)" in created and "PARTITION BY toDate(trace_time)" in created
    assert rekey[-1] == "CREATE VIEW IF NOT EXISTS db.verdicts_latest AS SELECT *, routed FROM db.verdicts FINAL"


def test_tables_follow_the_storage_rules():
    ddl = "\n".join(s for m in MIGRATIONS for s in m.render("db"))
    for table in TABLES:
        body = re.search(rf"CREATE TABLE IF NOT EXISTS db\.{table} \((.*?)\) ENGINE = (\w+)", ddl, re.S)
        assert body, table
        assert body.group(2) == "ReplacingMergeTree", table
        assert "DateTime64(3, 'UTC')" in body.group(1), table
        assert "DateTime(" not in body.group(1).replace("DateTime64(", ""), table
        for enum_col in ("kind", "criterion", "stage", "status", "label"):
            m = re.search(rf"\n\s+{enum_col} (\S+)", body.group(1))
            if m:
                assert m.group(1).startswith("LowCardinality"), (table, enum_col)


def test_checksum_changes_when_a_statement_changes():
    m = MIGRATIONS[0]
    changed = type(m)(m.version, m.name, m.statements[:-1] + (m.statements[-1] + " ",))
    assert changed.checksum != m.checksum
