"""The ClickHouse sink of the stream workers: batched, parameterised inserts of verdicts, shadow verdicts, frontier
verdicts, disagreements and dead letters (and of gold labels, for ``judgeline gold import``; of routing policies and drift
alarms, for ``judgeline route-policy``).

Contract:
- ``ClickHouseStore(settings).write(rows)`` (async) inserts every non-empty table of a ``judge_engine.online.pipeline.Rows``
  with clickhouse-connect's ``insert`` (typed columns, never SQL text built from values), column-oriented
  (``columns``), one insert per table per batch unless a table has more than
  ``settings.clickhouse.insert_batch_rows`` rows (then chunks of that many), and returns only when ClickHouse has
  accepted all of them. Each table's insert context (its column types) is fetched once per client and reused,
  so an insert is one round trip (clickhouse-connect otherwise asks the server for the types before every insert). It
  raises on failure; the stages wrap it in ``pipeline.hold`` (the failure policy's backoff), so a store that is down
  stops consumption instead of losing rows.
- The sync client runs in a worker thread (``asyncio.to_thread``), one statement at a time (a lock); after a failed
  statement the client is dropped and a fresh one is made on the next attempt (a restarted server is found again,
  on whatever port it now has). With an embedded ``chdb://`` DSN the sink only ever talks to the store server:
  while none runs it raises ``ConnectionError`` (transient: the stage holds) instead of opening the chDB path in the
  worker, which would lock the store server out of its own data.
- Idempotent under redelivery: the tables are ReplacingMergeTrees keyed by each row's identity (``schemas/ddl.py``),
  so a batch written twice leaves one row per identity (read with ``FINAL``). A partly written batch is simply
  written again whole.
- A table's columns are its model's fields (``TABLE_MODELS``; ``COLUMNS`` is derived, less the fields named in
  ``NOT_STORED``); columns the sink does not write have a DDL default or are materialized (``stored_at``,
  ``routed``), and ``tests/streams/test_table_columns.py`` checks the DDL after all migrations against the models.
  Nullable columns (``NULLABLE``) and JSON-text columns (``JSON_COLUMNS``) are the named exceptions to the type
  mapping.
- ``columns``/``row`` map a message model to the table's columns: optional text becomes '' (the columns are not
  Nullable), ``produced_at``, a dead letter's ``key`` and a gold item's answers/reference stay NULL when absent;
  ``stored_at`` is the server's. Map columns (a gold item's teacher labels) keep a missing label as ''; JSON columns
  (``meta``) are serialised with ``json.dumps``.
- ``frontier_verdicts(trace_ids, judge_name)`` (async) reads back the stored frontier verdicts of that judge for
  those traces (FINAL, parameterised; ``from_row`` turns a row back into its model): the frontier stage skips
  requests already judged.
- ``frontier_dead_letters(trace_ids, topic)`` (async) reads back the stored dead letters of stage ``frontier`` from
  that topic whose message key is one of those trace ids (the inline stage keys a frontier request by its trace id;
  FINAL, parameterised, ``raw`` and ``key`` as bytes): the frontier stage writes one such letter per trace.
- ``connect_sync(tables)`` makes the client and fetches those tables' insert contexts ahead of the first insert
  (a worker's warm-up, ``streams.app.warm_up``); it raises as an insert would.
- ``insert_sync(table, messages)`` inserts message models of any table of ``COLUMNS`` the same way (one table).
- Works the same against the embedded store server (chDB behind HTTP) and a ClickHouse server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from operator import attrgetter
from typing import Any, Iterable, Sequence

from pydantic import BaseModel

from judge_engine.online.pipeline import Rows
from schemas.dead_letter import DeadLetter
from schemas.gold import GoldLabel
from schemas.judge_version import JudgeVersionRecord
from schemas.routing import DriftAlarm, PolicyRecord
from schemas.settings import Settings
from schemas.shadow import ShadowVerdict
from schemas.trace import Trace
from schemas.verdict import Disagreement, FrontierVerdict, Verdict

TABLE_MODELS: dict[str, type[BaseModel]] = {
    "verdicts": Verdict, "frontier_verdicts": FrontierVerdict, "disagreements": Disagreement,
    "dead_letters": DeadLetter, "gold_labels": GoldLabel, "routing_policies": PolicyRecord, "drift_alarms": DriftAlarm,
    "traces": Trace, "judge_versions": JudgeVersionRecord, "shadow_verdicts": ShadowVerdict,
}
# model fields that have no column: the named exceptions to "a table's columns are its model's fields". A message's
# schema_version is the version of the bytes it arrived in, not a property of the row (schemas.versioning)
NOT_STORED: dict[str, frozenset[str]] = {table: frozenset({"schema_version"}) for table in TABLE_MODELS}
COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(name for name in model.model_fields if name not in NOT_STORED.get(table, frozenset()))
    for table, model in TABLE_MODELS.items()
}
NULLABLE = {("verdicts", "produced_at"), ("verdicts", "route_threshold"), ("verdicts", "sample_rate"),
            ("verdicts", "novelty"), ("shadow_verdicts", "live_confidence"), ("shadow_verdicts", "live_latency_ms"),
            ("dead_letters", "key"), ("gold_labels", "answer"),
            ("gold_labels", "answer_a"), ("gold_labels", "answer_b"), ("gold_labels", "reference"),
            *(("traces", c) for c in ("answer", "answer_a", "answer_b", "reference", "context")),
            *(("judge_versions", c) for c in ("gold_accuracy", "gold_kappa", "candidate_kappa_compared",
                                              "serving_kappa_compared", "longer_wins", "first_wins",
                                              "shorter_won_accuracy", "teacher_longer_wins", "human_longer_wins"))}
JSON_COLUMNS = {("gold_labels", "meta"), ("traces", "metadata")}
_FRONTIER_VERDICT_COLUMNS = ", ".join(COLUMNS["frontier_verdicts"])  # constant column names, for reading back
_DEAD_LETTER_COLUMNS = ", ".join(COLUMNS["dead_letters"])


def from_row(model: type[BaseModel], table: str, values: Sequence[Any]):
    """The message model of a stored row (the inverse of ``row`` for flat tables: '' back to None where the model's
    field defaults to None)."""
    data = {}
    for column, value in zip(COLUMNS[table], values):
        if value == "" and (table, column) not in NULLABLE and model.model_fields[column].default is None:
            value = None
        data[column] = value
    return model.model_validate(data)


_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)  # json.dumps's output; one encoder, not one per call


def _stored(table: str, column: str, values: list[Any]) -> list[Any]:
    """One column's values as stored (see the contract): None to '' unless ``NULLABLE``, JSON columns serialised,
    a map's missing values to ''. A column that needs none of it (most) is returned as it is, without a per-value
    call: the inline batch's mapping was a tenth of its store time (issue 13)."""
    nullable = (table, column) in NULLABLE
    if (table, column) in JSON_COLUMNS:
        return ["" if v is None and not nullable else _JSON.encode(v) for v in values]
    if not any(v is None or isinstance(v, dict) for v in values):
        return values
    return [(None if nullable else "") if v is None else
            {k: "" if x is None else x for k, x in v.items()} if isinstance(v, dict) else v for v in values]


def row(table: str, message: Any) -> list[Any]:
    return [_stored(table, column, [getattr(message, column)])[0] for column in COLUMNS[table]]


def columns(table: str, messages: Sequence[Any]) -> list[list[Any]]:
    """``row`` of each message, as one list per column of ``COLUMNS[table]`` (a column-oriented insert), built
    column by column."""
    return [_stored(table, column, list(map(attrgetter(column), messages))) for column in COLUMNS[table]]


class ClickHouseStore:
    def __init__(self, settings: Settings, client=None):
        self.settings = settings
        self.database = settings.clickhouse.database
        self.chunk = settings.clickhouse.insert_batch_rows
        self._client = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._contexts: dict[str, Any] = {}  # table -> insert context of the current client

    def _connect(self):
        if self._client is None:
            from streams.clickhouse import connect, resolve_dsn

            if resolve_dsn(self.settings).startswith("chdb://"):
                # never open the embedded engine in a worker: it would take the path from the store server (chDB
                # allows one process per path), which then could not restart; wait for the server instead
                raise ConnectionError("the embedded store server is not running (judgeline up starts it); "
                                      "holding until it is back")
            self._client = connect(self.settings)
        return self._client

    def connect_sync(self, tables: Iterable[str]) -> None:
        """Make the client and fetch the insert contexts of ``tables`` now, so a worker's first batch does not wait
        for them (``streams.app.warm_up``); raises as an insert would."""
        self._using_client(lambda client: [self._insert_context(client, table) for table in tables])
        from clickhouse_connect.driver import options

        # clickhouse-connect imports pandas and numpy on the first insert with data (to recognise a DataFrame):
        # measured 0.48 s of the first batch's store time in a worker; resolving them here moves it to start-up
        _ = options.pd, options.np

    def write_sync(self, rows: Rows) -> dict[str, int]:
        return self._insert_tables({t: m for t, m in rows.tables().items() if m})

    def insert_sync(self, table: str, messages: list[Any]) -> int:
        """Insert message models into one table of ``COLUMNS``; returns how many rows."""
        return self._insert_tables({table: messages} if messages else {}).get(table, 0)

    def _using_client(self, fn):
        """``fn(client)`` under the lock; a failed statement drops the client (a fresh one next time)."""
        with self._lock:
            try:
                return fn(self._connect())
            except BaseException:
                if self._owns_client:
                    self._drop()
                raise

    def _insert_context(self, client, table: str):
        """The insert context for ``table`` (column types fetched once per client, not before every insert)."""
        context = self._contexts.get(table)
        if context is None:
            context = client.create_insert_context(f"{self.database}.{table}", column_names=list(COLUMNS[table]),
                                                   column_oriented=True)
            self._contexts[table] = context
        return context

    def _insert_tables(self, tables: dict[str, list[Any]]) -> dict[str, int]:
        def insert(client) -> dict[str, int]:
            written: dict[str, int] = {}
            for table, messages in tables.items():
                context = self._insert_context(client, table)
                for i in range(0, len(messages), self.chunk):
                    context.data = columns(table, messages[i : i + self.chunk])
                    try:
                        client.insert(context=context)
                    finally:
                        context.data = None  # the context is reused: hold no rows between batches
                written[table] = len(messages)
            return written

        return self._using_client(insert)

    def frontier_verdicts_sync(self, trace_ids: list[str], judge_name: str) -> list[FrontierVerdict]:
        """The stored frontier verdicts of ``judge_name`` for these trace ids (after FINAL; parameterised)."""
        sql = (f"SELECT {_FRONTIER_VERDICT_COLUMNS} FROM {self.database}.frontier_verdicts FINAL "
               "WHERE judge_name = {judge:String} AND has({ids:Array(String)}, trace_id)")
        result = self._using_client(lambda c: c.query(sql, parameters={"judge": judge_name, "ids": list(trace_ids)}))
        return [from_row(FrontierVerdict, "frontier_verdicts", r) for r in result.result_rows]

    async def frontier_verdicts(self, trace_ids: list[str], judge_name: str) -> list[FrontierVerdict]:
        return await asyncio.to_thread(self.frontier_verdicts_sync, trace_ids, judge_name) if trace_ids else []

    def frontier_dead_letters_sync(self, trace_ids: list[str], topic: str) -> list[DeadLetter]:
        """The stored dead letters of stage frontier from ``topic`` keyed by these trace ids (FINAL; parameterised)."""
        sql = (f"SELECT {_DEAD_LETTER_COLUMNS} FROM {self.database}.dead_letters FINAL "
               "WHERE topic = {topic:String} AND stage = 'frontier' AND has({ids:Array(String)}, ifNull(key, ''))")
        result = self._using_client(lambda c: c.query(sql, parameters={"topic": topic, "ids": list(trace_ids)},
                                                      column_formats={"raw": "bytes", "key": "bytes"}))
        return [from_row(DeadLetter, "dead_letters", r) for r in result.result_rows]

    async def frontier_dead_letters(self, trace_ids: list[str], topic: str) -> list[DeadLetter]:
        return await asyncio.to_thread(self.frontier_dead_letters_sync, trace_ids, topic) if trace_ids else []

    async def write(self, rows: Rows) -> None:
        if len(rows):
            await asyncio.to_thread(self.write_sync, rows)

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._contexts.clear()
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken client
                pass

    def close(self) -> None:
        with self._lock:
            if self._owns_client:
                self._drop()
