"""The frontier stage without Kafka: every frontier verdict kept, disagreements where labels differ, the trace's
verdict from the frontier when the inline judge was unavailable, a dead letter when neither judged it."""

import asyncio
from datetime import datetime, timezone

from judge_engine.online.frontier_stage import FrontierStage, first_letter_per_trace, frontier_batch
from judge_engine.online.pipeline import Incoming
from schemas import FrontierRequest, FrontierVerdict, Trace, Verdict
from schemas.settings import Settings

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def trace(trace_id, kind="pointwise"):
    if kind == "pairwise":
        return Trace(trace_id=trace_id, kind=kind, question="Which?", answer_a="x", answer_b="y", timestamp=T0)
    return Trace(trace_id=trace_id, kind=kind, question="Capital of France?", answer="Paris.", timestamp=T0)


def inline(t: Trace, label: str, reason="low_confidence") -> Verdict:
    return Verdict(trace_id=t.trace_id, kind=t.kind, criterion=t.criterion, label=label, score=0.6, confidence=0.6,
                   judge_name="judge", judge_version="3", latency_ms=5, route_reason=reason, trace_time=t.timestamp)


class FakeFrontier:
    def __init__(self, labels):
        self.labels = labels  # trace id -> label, or None for "no verdict"

    async def judge_many(self, requests):
        out = []
        for r in requests:
            label = self.labels[r.trace.trace_id]
            status = "ok" if label else "retries_exhausted"
            out.append(FrontierVerdict(
                trace_id=r.trace.trace_id, kind=r.trace.kind, criterion=r.trace.criterion, judge_name="gpt-4",
                status=status, label=label, confidence=1.0 if label else 0.0, request_reason=r.reason,
                error=None if label else "gave up after 6 attempts", input_tokens=100, output_tokens=10,
                inline_label=r.inline_verdict.label if r.inline_verdict else None,
                inline_judge_version=r.inline_verdict.judge_version if r.inline_verdict else None,
                trace_time=r.trace.timestamp))
        return out


def msgs(*requests):
    return [Incoming(value=r if isinstance(r, bytes) else r.to_bytes(), key=None, topic="judgeline.frontier-requests",
                     partition=0, offset=i, timestamp=T0) for i, r in enumerate(requests)]


def test_frontier_verdicts_disagreements_and_the_unavailable_judge_path():
    agree, differ, down_ok, down_fail = trace("agree"), trace("differ", "pairwise"), trace("down-ok"), trace("down-x")
    requests = [
        FrontierRequest(trace=agree, reason="calibration_sample", inline_verdict=inline(agree, "pass", "calibration_sample")),
        FrontierRequest(trace=differ, reason="low_confidence", inline_verdict=inline(differ, "A")),
        FrontierRequest(trace=down_ok, reason="judge_unavailable"),
        FrontierRequest(trace=down_fail, reason="judge_unavailable"),
    ]
    judge = FakeFrontier({"agree": "pass", "differ": "B", "down-ok": "fail", "down-x": None})
    out = asyncio.run(frontier_batch(msgs(*requests, b"{not json"), judge))
    assert [(f.trace_id, f.status) for f in out.frontier_verdicts] == [
        ("agree", "ok"), ("differ", "ok"), ("down-ok", "ok"), ("down-x", "retries_exhausted")]
    assert [(d.trace_id, d.inline_label, d.frontier_label, d.request_reason) for d in out.disagreements] == [
        ("differ", "A", "B", "low_confidence")]
    (v,) = out.verdicts
    assert (v.trace_id, v.label, v.source, v.route_reason, v.score, v.judge_name) == (
        "down-ok", "fail", "frontier", "judge_unavailable", 0.0, "gpt-4")
    letters = sorted(out.dead_letters, key=lambda d: d.offset)
    assert [(d.offset, d.stage) for d in letters] == [(3, "frontier"), (4, "parse")]
    assert letters[0].raw == requests[3].to_bytes() and "retries_exhausted" in letters[0].error


def test_process_stores_every_row_then_publishes_frontier_verdicts():
    t = trace("t1")
    log, stored, published = [], [], []

    class Store:
        async def write(self, rows):
            log.append("stored")
            stored.append(rows)

    async def publish(outbox):
        log.append("published")
        published.extend(outbox.messages)

    s = Settings()
    stage = FrontierStage(s, FakeFrontier({"t1": "fail"}), Store(), publish)
    asyncio.run(stage.process(msgs(FrontierRequest(trace=t, reason="low_confidence",
                                                   inline_verdict=inline(t, "pass")))))
    assert log == ["stored", "published"]
    assert len(stored[0].frontier_verdicts) == 1 and len(stored[0].disagreements) == 1
    assert [(topic, key) for topic, key, _ in published] == [(s.kafka.topics.frontier_verdicts, b"t1")]
    assert stage.stats["status_ok"] == 1 and stage.stats["disagreements"] == 1


class AskedFrontier(FakeFrontier):
    """Records the trace ids it was asked about."""

    def __init__(self, labels):
        super().__init__(labels)
        self.asked: list[str] = []

    async def judge_many(self, requests):
        self.asked.extend(r.trace.trace_id for r in requests)
        return await super().judge_many(requests)


class StoredVerdicts:
    """A store whose lookup returns ``stored`` (for gpt-4, and for ``expect_ids`` when given); keeps what is written."""

    def __init__(self, stored, expect_ids=None):
        self.stored, self.expect_ids, self.rows = stored, expect_ids, None

    async def frontier_verdicts(self, trace_ids, judge_name):
        assert judge_name == "gpt-4" and (self.expect_ids is None or trace_ids == self.expect_ids)
        return self.stored

    async def write(self, rows):
        self.rows = rows


async def _no_publish(outbox):
    return None


def test_a_request_whose_frontier_verdict_is_stored_is_not_judged_again():
    done, new = trace("done", "pairwise"), trace("new")
    stored = FrontierVerdict(trace_id="done", kind="pairwise", criterion=done.criterion, judge_name="gpt-4",
                             label="B", request_reason="low_confidence", inline_label="B", trace_time=T0,
                             attempts=2, cost_usd=0.01)
    frontier = AskedFrontier({"new": "pass"})
    store = StoredVerdicts([stored], expect_ids=["done", "new"])
    stage = FrontierStage(Settings(), frontier, store, _no_publish)
    requests = [FrontierRequest(trace=done, reason="low_confidence", inline_verdict=inline(done, "A")),
                FrontierRequest(trace=new, reason="calibration_sample", inline_verdict=inline(new, "pass"))]
    out = asyncio.run(stage.process(msgs(*requests)))
    assert frontier.asked == ["new"], "the stored trace was sent to the frontier again"
    reused = out.frontier_verdicts[0]
    assert (reused.label, reused.attempts, reused.judged_at, reused.inline_label) == ("B", 2, stored.judged_at, "A")
    assert [d.trace_id for d in out.disagreements] == ["done"]  # the stored B against the new inline A
    assert out.reused == 1 and stage.stats["reused"] == 1 and len(store.rows.frontier_verdicts) == 2


def test_a_redelivered_request_retries_a_failed_frontier_verdict_instead_of_reusing_it():
    t = trace("failed-before")
    failed = FrontierVerdict(trace_id=t.trace_id, kind="pointwise", criterion=t.criterion, judge_name="gpt-4",
                             status="retries_exhausted", error="APITimeoutError", request_reason="low_confidence",
                             inline_label="pass", trace_time=T0, attempts=3)
    frontier = AskedFrontier({t.trace_id: "fail"})
    stage = FrontierStage(Settings(), frontier, StoredVerdicts([failed]), _no_publish)
    out = asyncio.run(stage.process(msgs(FrontierRequest(trace=t, reason="low_confidence",
                                                         inline_verdict=inline(t, "pass")))))
    assert frontier.asked == [t.trace_id], "the failed verdict was reused instead of asking the frontier again"
    (fv,) = out.frontier_verdicts
    assert (fv.status, fv.label, out.reused) == ("ok", "fail", 0)
    assert [d.trace_id for d in out.disagreements] == [t.trace_id]


def at(request: FrontierRequest, offset: int, partition: int = 0) -> Incoming:
    return Incoming(value=request.to_bytes(), key=request.trace.trace_id.encode(),
                    topic=Settings().kafka.topics.frontier_requests, partition=partition, offset=offset, timestamp=T0)


class StoredLetters(StoredVerdicts):
    """A store that also answers the frontier dead letters lookup from what it was written, as the real one does."""

    def __init__(self):
        super().__init__([])
        self.letters: dict[tuple, object] = {}  # (topic, partition, offset) -> the letter: a redelivery replaces it
        self.asked: list[tuple[list[str], str]] = []

    async def frontier_dead_letters(self, trace_ids, topic):
        self.asked.append((trace_ids, topic))
        return [d for d in self.letters.values()
                if d.stage == "frontier" and d.topic == topic and (d.key or b"").decode() in trace_ids]

    async def write(self, rows):
        self.rows = rows
        self.letters.update({(d.topic, d.partition, d.offset): d for d in rows.dead_letters})


def test_a_trace_gets_one_frontier_dead_letter_however_often_its_failing_request_comes():
    """Issue 12 point 3: the same unanswerable request at several offsets (an inline batch redelivered republishes
    it) makes one dead letter, the first; a redelivery of that same offset keeps and republishes it."""
    down, other = trace("down"), trace("other")
    same_id_other_criterion = Trace(**{**down.model_dump(), "criterion": "safety"})
    request = FrontierRequest(trace=down, reason="judge_unavailable")
    published = []

    async def publish(outbox):
        published.extend(outbox.messages)

    s = Settings()
    store = StoredLetters()
    stage = FrontierStage(s, FakeFrontier({"down": None, "other": None}), store, publish)
    first = asyncio.run(stage.process([at(request, 3)]))
    assert [(d.offset, d.stage) for d in first.dead_letters] == [(3, "frontier")]
    assert store.asked == [(["down"], s.kafka.topics.frontier_requests)]

    # later: the same trace twice more in one batch, beside another trace and the same id under another criterion
    second = asyncio.run(stage.process([
        at(request, 9), at(FrontierRequest(trace=other, reason="judge_unavailable"), 10), at(request, 11),
        at(FrontierRequest(trace=same_id_other_criterion, reason="judge_unavailable"), 12)]))
    assert [(d.key, d.offset) for d in second.dead_letters] == [(b"other", 10), (b"down", 12)]
    assert second.repeated == 2 and stage.stats["repeated_dead_letters"] == 2
    assert sorted(o for _, _, o in store.letters) == [3, 10, 12]
    assert len(second.frontier_verdicts) == 4, "every frontier verdict is still stored, failed ones too"

    # the first offset redelivered (a crash before its commit): its letter is written and published again
    published.clear()
    third = asyncio.run(stage.process([at(request, 3)]))
    assert [d.offset for d in third.dead_letters] == [3] and third.repeated == 0
    assert [t for t, _, _ in published].count(s.kafka.topics.dead_letters) == 1


def test_without_a_store_lookup_one_batch_still_keeps_one_letter_per_trace():
    down = trace("down")
    request = FrontierRequest(trace=down, reason="judge_unavailable")
    out = asyncio.run(frontier_batch([at(request, 1), at(request, 2)], FakeFrontier({"down": None})))
    assert [d.offset for d in out.dead_letters] == [1, 2] and len(out.unanswered) == 2
    out = asyncio.run(first_letter_per_trace(out, None))
    assert [d.offset for d in out.dead_letters] == [1] and out.repeated == 1
