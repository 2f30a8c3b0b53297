"""The demo's first phase as a plain function (``operations.demo.prepare_stack``) on the session's real stack."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration


def test_prepare_stack_checks_health_and_migrates_a_fresh_database(stack):
    from operations.demo import prepare_stack
    from schemas.ddl import MIGRATIONS
    from streams.clickhouse import connect

    database = f"t_{uuid.uuid4().hex[:12]}"
    settings = stack.model_copy(update={"clickhouse": stack.clickhouse.model_copy(update={"database": database})})
    lines: list[str] = []
    resolved = prepare_stack(settings, log=lines.append)
    client = connect(resolved)
    try:
        assert [line.split()[:2] for line in lines if "healthy" in line] == [
            ["broker", "healthy"], ["clickhouse", "healthy"], ["triton", "healthy"]]
        assert sum("already running" in line for line in lines) == 3  # the session's services, not started twice
        applied = [m.version for m in MIGRATIONS]
        assert lines[-1].endswith(f"database {database}: applied {', '.join(map(str, applied))}; already applied 0")
        rows = client.query(f"SELECT version FROM {database}.schema_migrations FINAL ORDER BY version").result_rows
        assert [r[0] for r in rows] == applied
        assert prepare_stack(settings, log=lines.append) == resolved  # idempotent: nothing applied the second time
        assert lines[-1].endswith(f"applied none; already applied {len(applied)}")
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
