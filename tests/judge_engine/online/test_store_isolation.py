"""A row the store refuses for good is isolated (issue 12, point 2), on the real store server.

The test's database gets a CHECK constraint on ``verdicts`` that refuses trace ids starting with ``refused-``
(ClickHouse answers VIOLATED_CONSTRAINT, code 469, for the whole insert). The inline stage must then write the
batch's rows one by one, store every other verdict, turn the refused trace into one dead letter (stage ``store``,
its message's bytes and offset) that is stored and published, and return (no endless hold). The frontier stage
does the same with a frontier verdict the store refuses (a CHECK constraint on ``frontier_verdicts``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from judge_engine.failures import classify
from judge_engine.online.frontier_stage import FrontierStage
from judge_engine.online.inline import ConstantJudge, InlineStage
from judge_engine.online.pipeline import Incoming
from schemas.trace import Trace
from schemas.verdict import FrontierRequest, FrontierVerdict, Verdict
from streams.sink import ClickHouseStore

pytestmark = pytest.mark.integration


def _process(stage_class, judge, settings, messages):
    """Run one batch through a stage on the real store; returns (outcome, messages published, hold sleeps)."""
    published, sleeps = [], []

    async def publish(outbox):
        published.extend(outbox.messages)

    async def sleep(s):
        sleeps.append(s)

    async def main():
        sink = ClickHouseStore(settings)
        try:
            return await stage_class(settings, judge, sink, publish, sleep=sleep).process(messages)
        finally:
            sink.close()

    return asyncio.run(main()), published, sleeps


def _the_store_letter(client, db, table: str, partition: int, offset: int, raw_value: bytes) -> None:
    """Exactly one dead letter stored: stage store, at that position, naming the table and ClickHouse's code 469."""
    letters = client.query(f"SELECT stage, partition, offset, error, raw FROM {db}.dead_letters FINAL").result_rows
    assert len(letters) == 1
    stage, got_partition, got_offset, error, raw = letters[0]
    assert (stage, got_partition, got_offset) == ("store", partition, offset)
    assert f"the store refused its {table} row for good" in error and "469" in error, error
    assert (raw.encode() if isinstance(raw, str) else raw) == raw_value


def test_a_row_the_store_refuses_for_good_becomes_a_store_dead_letter(store):
    client, settings = store
    db = settings.clickhouse.database
    client.command(f"ALTER TABLE {db}.verdicts ADD CONSTRAINT no_refused CHECK NOT startsWith(trace_id, 'refused-')")
    settings = settings.model_copy(update={"routing": settings.routing.model_copy(
        update={"threshold": 0.0, "calibration_sample_rate": 0.0})})
    ids = ["kept-1", "refused-2", "kept-3", "kept-4"]
    messages = [Incoming(value=Trace(trace_id=t, kind="pointwise", question="q?", answer="a").to_bytes(),
                         key=t.encode(), topic="traces", partition=1, offset=10 + i) for i, t in enumerate(ids)]
    outcome, published, sleeps = _process(InlineStage, ConstantJudge(), settings, messages)
    assert sleeps == []  # bounded: no hold
    stored = sorted(t for (t,) in client.query(f"SELECT trace_id FROM {db}.verdicts FINAL").result_rows)
    assert stored == ["kept-1", "kept-3", "kept-4"]
    _the_store_letter(client, db, "verdicts", 1, 11, messages[1].value)
    assert [v.trace_id for v in outcome.verdicts] == ["kept-1", "kept-3", "kept-4"]
    assert [d.stage for d in outcome.dead_letters] == ["store"]
    topics = settings.kafka.topics
    assert [k for t, k, _ in published if t == topics.dead_letters] == [b"refused-2"]


def test_a_clickhouse_error_code_in_the_text_is_classified():
    from clickhouse_connect.driver.exceptions import DatabaseError

    refused = DatabaseError("HTTPDriver for http://x received ClickHouse error code 469\n Code: 469. DB::Exception: "
                            "Constraint `no_refused` ... is violated. (VIOLATED_CONSTRAINT)")
    busy = DatabaseError("received ClickHouse error code 252\n Code: 252. DB::Exception: Too many parts")
    assert (classify(refused), classify(busy)) == ("permanent", "transient")


class _Frontier:
    """Answers every request "fail" (the inline verdicts say "pass": each trace is also a disagreement)."""

    async def judge_many(self, requests):
        return [FrontierVerdict(trace_id=r.trace.trace_id, kind=r.trace.kind, criterion=r.trace.criterion,
                                judge_name="gpt-4", status="ok", label="fail", confidence=1.0, request_reason=r.reason,
                                inline_label=r.inline_verdict.label, inline_judge_version=r.inline_verdict.judge_version,
                                trace_time=r.trace.timestamp) for r in requests]


def test_a_frontier_verdict_the_store_refuses_for_good_becomes_a_store_dead_letter(store):
    client, settings = store
    db = settings.clickhouse.database
    client.command(f"ALTER TABLE {db}.frontier_verdicts ADD CONSTRAINT no_refused "
                   "CHECK NOT startsWith(trace_id, 'refused-')")
    ids = ["kept-1", "refused-2", "kept-3"]
    requests = []
    for t in ids:
        trace = Trace(trace_id=t, kind="pointwise", question="q?", answer="a", timestamp=datetime.now(timezone.utc))
        requests.append(FrontierRequest(trace=trace, reason="low_confidence", inline_verdict=Verdict(
            trace_id=t, kind="pointwise", criterion=trace.criterion, label="pass", score=0.6, confidence=0.6,
            judge_name="judge", judge_version="3", latency_ms=5, route_reason="low_confidence",
            trace_time=trace.timestamp)))
    messages = [Incoming(value=r.to_bytes(), key=r.trace.trace_id.encode(), topic="frontier-requests", partition=2,
                         offset=20 + i) for i, r in enumerate(requests)]
    outcome, published, sleeps = _process(FrontierStage, _Frontier(), settings, messages)
    assert sleeps == []  # bounded: no hold
    stored = sorted(t for (t,) in client.query(f"SELECT trace_id FROM {db}.frontier_verdicts FINAL").result_rows)
    assert stored == ["kept-1", "kept-3"]
    disagreements = client.query(f"SELECT trace_id FROM {db}.disagreements FINAL ORDER BY trace_id").result_rows
    assert disagreements == [("kept-1",), ("kept-3",), ("refused-2",)]  # rows the store took are kept
    _the_store_letter(client, db, "frontier_verdicts", 2, 21, messages[1].value)
    assert [d.stage for d in outcome.dead_letters] == ["store"]
    assert [k for t, k, _ in published if t == settings.kafka.topics.dead_letters] == [b"refused-2"]
