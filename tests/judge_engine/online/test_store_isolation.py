"""A row the store refuses for good is isolated (issue 12, point 2), on the real store server.

The test's database gets a CHECK constraint on ``verdicts`` that refuses trace ids starting with ``refused-``
(ClickHouse answers VIOLATED_CONSTRAINT, code 469, for the whole insert). The inline stage must then write the
batch's rows one by one, store every other verdict, turn the refused trace into one dead letter (stage ``store``,
its message's bytes and offset) that is stored and published, and return (no endless hold).
"""

from __future__ import annotations

import asyncio

import pytest

from judge_engine.failures import classify
from judge_engine.online.inline import ConstantJudge, InlineStage
from judge_engine.online.pipeline import Incoming
from schemas.trace import Trace
from streams.sink import ClickHouseStore

pytestmark = pytest.mark.integration


def test_a_row_the_store_refuses_for_good_becomes_a_store_dead_letter(store):
    client, settings = store
    db = settings.clickhouse.database
    client.command(f"ALTER TABLE {db}.verdicts ADD CONSTRAINT no_refused CHECK NOT startsWith(trace_id, 'refused-')")
    settings = settings.model_copy(update={"routing": settings.routing.model_copy(
        update={"threshold": 0.0, "calibration_sample_rate": 0.0})})
    ids = ["kept-1", "refused-2", "kept-3", "kept-4"]
    messages = [Incoming(value=Trace(trace_id=t, kind="pointwise", question="q?", answer="a").to_bytes(),
                         key=t.encode(), topic="traces", partition=1, offset=10 + i) for i, t in enumerate(ids)]
    published = []
    sleeps = []

    async def publish(outbox):
        published.extend(outbox.messages)

    async def sleep(s):
        sleeps.append(s)

    async def main():
        sink = ClickHouseStore(settings)
        try:
            return await InlineStage(settings, ConstantJudge(), sink, publish, sleep=sleep).process(messages)
        finally:
            sink.close()

    outcome = asyncio.run(main())
    assert sleeps == []  # bounded: no hold
    stored = sorted(t for (t,) in client.query(f"SELECT trace_id FROM {db}.verdicts FINAL").result_rows)
    assert stored == ["kept-1", "kept-3", "kept-4"]
    letters = client.query(f"SELECT stage, partition, offset, error, raw FROM {db}.dead_letters FINAL").result_rows
    assert len(letters) == 1
    stage, partition, offset, error, raw = letters[0]
    assert (stage, partition, offset) == ("store", 1, 11)
    assert "the store refused its verdicts row for good" in error and "469" in error, error
    assert (raw.encode() if isinstance(raw, str) else raw) == messages[1].value
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
