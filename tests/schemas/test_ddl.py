"""Migrations as text: append-only versions, idempotent statements, the design rules of the tables."""

import re

from schemas.ddl import MIGRATIONS, TABLES, bootstrap_statements


def test_versions_are_unique_and_increasing():
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_every_statement_is_idempotent_and_uses_the_database_placeholder():
    for m in MIGRATIONS:
        for s in m.statements:
            assert re.search(r"IF NOT EXISTS|IF EXISTS", s), s[:80]
            assert "{db}." in s
    assert all("IF NOT EXISTS" in s for s in bootstrap_statements("x"))


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
