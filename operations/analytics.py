"""Running the analytics queries (``schemas/analytics_sql.py``) against the store: a window, a client, rows as dicts.

Contract:
- ``Window(since, until, tenant)``: the trace-time window every query filters on; ``None`` ends mean unbounded
  (1970 / 2200). Times are UTC (naive values are taken as UTC).
- ``Analytics(client, database, window, judge=..., id_prefix=..., step_s=..., buckets=..., threshold=...)``: ``query(sql)`` binds
  the window and those values as ClickHouse query parameters (never pasted into the SQL) and returns a list of
  dicts (column -> value); ``report()`` runs every query of ``REPORT_QUERIES`` (and the dead letters and the shadow
  comparison) and returns name -> rows.
- ``connect_store(settings)``: the client for a one-shot command (``streams.clickhouse.connect``: the store server
  over HTTP when it runs, else the chDB path in process, as ``judgeline migrate`` does), after checking that the
  migrations created what the queries read (a clear error naming ``judgeline migrate`` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from schemas.analytics_sql import DEAD_LETTERS, REPORT_QUERIES, SHADOW_COMPARISON, render
from schemas.settings import Settings

MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)


class StoreNotReady(RuntimeError):
    pass


def _utc(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None
    tenant: str | None = None

    def params(self) -> dict[str, Any]:
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        return {"since": _utc(self.since, MIN_TIME).strftime(fmt)[:-3],
                "until": _utc(self.until, MAX_TIME).strftime(fmt)[:-3],
                "tenant": self.tenant or ""}

    def describe(self) -> str:
        since = _utc(self.since, MIN_TIME).isoformat() if self.since else "the beginning"
        until = _utc(self.until, MAX_TIME).isoformat() if self.until else "now"
        return f"traces from {since} to {until}" + (f", tenant {self.tenant}" if self.tenant else ", all tenants")


class Analytics:
    def __init__(self, client: Any, database: str, window: Window, *, judge: str = "gpt-4", id_prefix: str = "",
                 step_s: int = 3600, buckets: int = 10, threshold: float = 0.7):
        self.client = client
        self.database = database
        self.window = window
        self.params = {**window.params(), "judge": judge, "id_prefix": id_prefix, "step_s": step_s,
                       "buckets": buckets, "threshold": threshold}

    def query(self, sql: str) -> list[dict[str, Any]]:
        result = self.client.query(render(sql, self.database), parameters=self.params)
        return [dict(zip(result.column_names, r)) for r in result.result_rows]

    def report(self) -> dict[str, list[dict[str, Any]]]:
        """Every report query's rows by name, plus ``dead_letters`` (``DEAD_LETTERS``, for the headline) and ``shadow``
        (``SHADOW_COMPARISON``: the shadow candidates beside the live verdicts)."""
        return {**{name: self.query(sql) for name, sql in REPORT_QUERIES.items()},
                "dead_letters": self.query(DEAD_LETTERS), "shadow": self.query(SHADOW_COMPARISON)}


def connect_store(settings: Settings):
    from schemas.ddl import TABLES, VIEWS
    from streams.clickhouse import connect, describe

    db = settings.clickhouse.database
    try:
        client = connect(settings)
        present = {r[0] for r in client.query("SELECT name FROM system.tables WHERE database = {db:String}",
                                              parameters={"db": db}).result_rows}
    except Exception as e:  # noqa: BLE001 - one line for the user
        raise StoreNotReady(f"cannot reach {describe(settings)}: {e}") from e
    missing = sorted(set(TABLES + VIEWS) - present)
    if missing:
        raise StoreNotReady(f"database {db} on {describe(settings)} lacks {', '.join(missing)}: run `judgeline "
                            "migrate` first")
    return client
