"""One frontier dead letter per trace (issue 12, point 3), on the real store server.

A request whose trace has no inline verdict (the judge was down) and that the frontier cannot answer becomes a dead
letter of stage ``frontier``. The same request delivered again at another offset (an inline batch redelivered
republishes it) fails the same way: the stage looks up the trace's stored frontier dead letters
(``ClickHouseStore.frontier_dead_letters``) and writes none more. Its bytes, offset and error stay those of the
first; a redelivery of the first offset is stored and published again (its identity is the stored one's).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from judge_engine.online.frontier_stage import FrontierStage
from judge_engine.online.pipeline import Incoming
from schemas import FrontierRequest, FrontierVerdict, Trace
from streams.sink import ClickHouseStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


class Unreachable:
    """A frontier that never answers (every attempt failed), as ``judge_many`` reports it."""

    def __init__(self):
        self.asked = 0

    async def judge_many(self, requests):
        self.asked += len(requests)
        return [FrontierVerdict(trace_id=r.trace.trace_id, tenant=r.trace.tenant, app=r.trace.app,
                                kind=r.trace.kind, criterion=r.trace.criterion, judge_name="gpt-4",
                                status="retries_exhausted", confidence=0.0, error="APIConnectionError",
                                request_reason=r.reason, trace_time=r.trace.timestamp, attempts=3)
                for r in requests]


def test_a_request_delivered_twice_that_fails_for_good_leaves_one_dead_letter(store):
    client, settings = store
    db, topic = settings.clickhouse.database, settings.kafka.topics.frontier_requests
    down = Trace(trace_id="down-1", tenant="acme", kind="pointwise", question="q?", answer="a", timestamp=T0)
    value = FrontierRequest(trace=down, reason="judge_unavailable").to_bytes()
    again = FrontierRequest(trace=down, reason="judge_unavailable").to_bytes()  # republished: a new requested_at
    assert value != again

    def at(raw: bytes, offset: int) -> Incoming:
        return Incoming(value=raw, key=b"down-1", topic=topic, partition=2, offset=offset, timestamp=T0)

    published = []

    async def publish(outbox):
        published.extend(t for t, _, _ in outbox.messages)

    frontier = Unreachable()

    async def main():
        sink = ClickHouseStore(settings)
        try:
            stage = FrontierStage(settings, frontier, sink, publish)
            first = await stage.process([at(value, 5)])
            second = await stage.process([at(again, 17)])
            redelivered = await stage.process([at(value, 5)])
            return stage, first, second, redelivered
        finally:
            sink.close()

    stage, first, second, redelivered = asyncio.run(main())
    assert frontier.asked == 3, "each delivery is still asked for (a failed frontier verdict is never reused)"
    assert [d.offset for d in first.dead_letters] == [5]
    assert second.dead_letters == [] and second.repeated == 1 and stage.stats["repeated_dead_letters"] == 1
    assert [d.offset for d in redelivered.dead_letters] == [5] and redelivered.repeated == 0
    assert published.count(settings.kafka.topics.dead_letters) == 2  # the first delivery and its redelivery
    rows = client.query(f"SELECT stage, partition, offset, raw, key FROM {db}.dead_letters FINAL").result_rows
    assert len(rows) == 1
    stage_name, partition, offset, raw, key = rows[0]
    assert (stage_name, partition, offset, key) == ("frontier", 2, 5, "down-1")
    assert (raw.encode() if isinstance(raw, str) else raw) == value
    # nothing lost: the frontier verdict of each attempt is stored (replacing its twin), status and error kept
    assert client.query(f"SELECT status, error FROM {db}.frontier_verdicts FINAL").result_rows == [
        ("retries_exhausted", "APIConnectionError")]


def test_the_lookup_reads_back_only_frontier_letters_of_that_topic_and_those_traces(store):
    from judge_engine.online.pipeline import Rows, dead_letter

    _, settings = store
    topic = settings.kafka.topics.frontier_requests
    raw = bytes(range(256))  # any bytes: raw is read back as bytes, never decoded
    letters = [dead_letter(Incoming(value=raw, key=b"a", topic=topic, partition=0, offset=1, timestamp=T0), "e",
                           "frontier"),
               dead_letter(Incoming(value=raw, key=b"a", topic=topic, partition=0, offset=2, timestamp=T0), "e",
                           "parse"),
               dead_letter(Incoming(value=raw, key=b"a", topic="other", partition=0, offset=3, timestamp=T0), "e",
                           "frontier"),
               dead_letter(Incoming(value=raw, key=b"b", topic=topic, partition=0, offset=4, timestamp=T0), "e",
                           "frontier"),
               dead_letter(Incoming(value=raw, key=None, topic=topic, partition=0, offset=5, timestamp=T0), "e",
                           "frontier")]
    sink = ClickHouseStore(settings)
    try:
        sink.write_sync(Rows(dead_letters=letters))
        got = asyncio.run(sink.frontier_dead_letters(["a", "c"], topic))
    finally:
        sink.close()
    assert [(d.offset, d.raw, d.key, d.stage) for d in got] == [(1, raw, b"a", "frontier")]
