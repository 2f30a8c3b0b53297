"""The inline stage without Kafka: validation to dead letters, one verdict per trace, routing, bad input isolated,
an unavailable judge held or routed to the frontier, and nothing published before the rows are stored."""

import asyncio
from datetime import datetime, timezone

import pytest

from judge_engine.clients.triton_client import JudgeResult
from judge_engine.failures import GaveUp
from judge_engine.online.inline import (
    ConstantJudge,
    InlineStage,
    JudgeUnavailable,
    judge_batch,
)
from judge_engine.online.pipeline import Incoming
from judge_engine.online.routing import in_calibration_sample
from schemas import FrontierRequest, Trace
from schemas.settings import Settings

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


class BadInput(ValueError):
    """A permanent error, as the failure policy classifies ValueError."""


class FakeJudge:
    """Confidence per trace from ``confidence``; refuses (permanently) any batch holding a question with 'poison'."""

    def __init__(self, confidence=None, unavailable=0, label=None):
        self.confidence = confidence or {}
        self.unavailable = unavailable  # this many calls fail as unavailable first
        self.label = label
        self.calls: list[int] = []

    async def judge(self, items):
        items = list(items)
        self.calls.append(len(items))
        if self.unavailable:
            self.unavailable -= 1
            raise GaveUp("triton judge", 4, ConnectionError("connection refused"))
        if any("poison" in it.question for it in items):
            raise BadInput("INVALID_ARG: row 0: kind not trained")
        return [JudgeResult(label=self.label or ("A" if it.kind == "pairwise" else "pass"),
                            score=0.9, confidence=self.confidence.get(it.trace_id, 0.95), probs=(0.9, 0.1, 0.0),
                            swap_consistent=True, model_name="judge", model_version="7", latency_ms=12.0)
                for it in items]


def trace(trace_id, kind="pointwise", question="What is the capital of France?"):
    if kind == "pairwise":
        return Trace(trace_id=trace_id, kind=kind, question=question, answer_a="Paris.", answer_b="Lyon.")
    return Trace(trace_id=trace_id, kind=kind, question=question, answer="Paris.")


def message(value: bytes | None, offset: int, key: bytes | None = None) -> Incoming:
    return Incoming(value=value, key=key, topic="judgeline.traces", partition=1, offset=offset, timestamp=T0)


def msgs(*values):
    return [message(v.to_bytes() if isinstance(v, Trace) else v, i) for i, v in enumerate(values)]


def settings(**stream):
    return Settings(routing={"threshold": 0.7, "calibration_sample_rate": 0.0, "without_policy": "threshold"},
                    stream=stream)


def run(coro):
    return asyncio.run(coro)


def test_valid_traces_get_one_verdict_each_and_bad_messages_dead_letters_with_their_bytes():
    bad = [b"not json", b"\xff\xfe\x00", b'{"trace_id": "x", "kind": "pointwise", "question": "q"}', None]
    batch = msgs(trace("t1"), trace("t2", "pairwise"), *bad)
    out = run(judge_batch(batch, FakeJudge(), settings()))
    assert [(v.trace_id, v.label, v.judge_version, v.source) for v in out.verdicts] == [
        ("t1", "pass", "7", "inline"), ("t2", "A", "7", "inline")]
    assert all(v.produced_at == T0 and v.route_reason is None for v in out.verdicts)
    assert [(d.offset, d.raw, d.stage, d.topic, d.partition) for d in out.dead_letters] == [
        (2, b"not json", "parse", "judgeline.traces", 1), (3, b"\xff\xfe\x00", "parse", "judgeline.traces", 1),
        (4, bad[2], "parse", "judgeline.traces", 1), (5, b"", "parse", "judgeline.traces", 1)]
    assert "UTF-8" in out.dead_letters[1].error and "answer" in out.dead_letters[2].error
    assert out.requests == []


def test_low_confidence_and_sampled_traces_are_routed_with_the_verdict():
    ids = [f"t-{i}" for i in range(60)]
    sampled = {t for t in ids if in_calibration_sample(t, 0.2)}
    judge = FakeJudge(confidence={"t-0": 0.5, "t-1": 0.69})
    s = Settings(routing={"threshold": 0.7, "calibration_sample_rate": 0.2, "without_policy": "threshold"})
    out = run(judge_batch(msgs(*(trace(t) for t in ids)), judge, s))
    reasons = {v.trace_id: v.route_reason for v in out.verdicts}
    expected = {t: "low_confidence" if t in ("t-0", "t-1") else "calibration_sample" if t in sampled else None
                for t in ids}
    assert reasons == expected and 0 < len(sampled) < 30
    assert [(r.trace.trace_id, r.reason) for r in out.requests] == [(t, r) for t, r in expected.items() if r]
    assert all(r.inline_verdict is not None and r.inline_verdict.trace_id == r.trace.trace_id for r in out.requests)
    assert judge.calls == [60]  # one judge call for the whole micro-batch


def test_a_trace_the_judge_refuses_costs_only_itself():
    judge = FakeJudge()
    batch = msgs(trace("ok-1"), trace("bad", question="poison?"), trace("ok-2", "pairwise"))
    out = run(judge_batch(batch, judge, settings()))
    assert [v.trace_id for v in out.verdicts] == ["ok-1", "ok-2"]
    assert [(d.offset, d.stage) for d in out.dead_letters] == [(1, "judge")]
    assert "refused" in out.dead_letters[0].error and "INVALID_ARG" in out.dead_letters[0].error
    assert judge.calls == [3, 1, 1, 1]


def test_an_answer_outside_the_vocabulary_is_a_judge_dead_letter():
    out = run(judge_batch(msgs(trace("t1")), FakeJudge(label="A"), settings()))  # "A" for a pointwise trace
    assert out.verdicts == [] and out.dead_letters[0].stage == "judge" and "label" in out.dead_letters[0].error


def test_an_unavailable_judge_holds_or_goes_to_the_frontier_as_set():
    batch = msgs(trace("t1"), b"junk")
    with pytest.raises(JudgeUnavailable):
        run(judge_batch(batch, FakeJudge(unavailable=1), settings(judge_unavailable="hold")))
    out = run(judge_batch(batch, FakeJudge(unavailable=1), settings(judge_unavailable="frontier")))
    assert out.verdicts == [] and [d.offset for d in out.dead_letters] == [1]
    assert [(r.trace.trace_id, r.reason, r.inline_verdict) for r in out.requests] == [("t1", "judge_unavailable", None)]


class FakeStore:
    def __init__(self, failures=0, log=None):
        self.failures = failures
        self.rows = []
        self.log = log if log is not None else []

    async def write(self, rows):
        if self.failures:
            self.failures -= 1
            self.log.append("store failed")
            raise ConnectionError("store down")
        self.rows.append(rows)
        self.log.append("stored")


def stage_with(judge, store, s=None):
    published, sleeps = [], []

    async def publish(outbox):
        store.log.append("published")
        published.extend(outbox.messages)

    async def sleep(seconds):
        sleeps.append(seconds)

    return InlineStage(s or settings(), judge, store, publish, sleep=sleep), published, sleeps


def test_process_holds_while_judge_and_store_are_down_then_stores_before_publishing():
    store = FakeStore(failures=2)
    s = Settings(routing={"threshold": 0.7, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    # down for two rounds: each round is the batch's call and one call per trace (all failing: the judge is down)
    stage, published, sleeps = stage_with(FakeJudge(unavailable=6, confidence={"t1": 0.3}), store, s)
    out = run(stage.process(msgs(trace("t1"), trace("t2"), b"junk")))
    assert len(sleeps) == 4 and all(0 <= p <= s.stream.hold_max_backoff_s for p in sleeps)
    assert store.log == ["store failed", "store failed", "stored", "published"]
    (rows,) = store.rows
    assert [v.trace_id for v in rows.verdicts] == ["t1", "t2"] and len(rows.dead_letters) == 1
    topics = s.kafka.topics
    by_topic = {}
    for topic, key, value in published:
        by_topic.setdefault(topic, []).append((key, value))
    assert [k for k, _ in by_topic[topics.frontier_requests]] == [b"t1"]
    assert FrontierRequest.model_validate_json(by_topic[topics.frontier_requests][0][1]).reason == "low_confidence"
    assert len(by_topic[topics.dead_letters]) == 1 and len(by_topic[topics.verdicts]) == 2
    assert stage.stats["verdicts"] == 2 and stage.stats["routed_low_confidence"] == 1 and out.requests


def test_process_is_cancelled_cleanly_while_holding():
    store = FakeStore()

    async def main():
        stage = InlineStage(settings(), FakeJudge(unavailable=10**6), store, lambda outbox: None)
        task = asyncio.create_task(stage.process(msgs(trace("t1"))))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert store.rows == []  # nothing stored, so nothing may be acknowledged


def test_constant_judge_answers_every_item_in_its_kind():
    results = run(ConstantJudge(0.0).judge([trace("a"), trace("b", "pairwise")]))
    assert [(r.label, r.model_version) for r in results] == [("pass", "stub"), ("A", "stub")]
