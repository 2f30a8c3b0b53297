"""Shadow mode in the inline stage, without Kafka: the candidate scores every valid trace beside the live judge, its
rows go to the store with the batch (before anything is published), and the live verdicts, routing and dead letters
are exactly those of a run without shadow mode; a candidate that is not loaded, too slow or failing only costs the
batch its shadow rows, counted by reason, never a hold."""

import asyncio
from datetime import datetime, timezone

from judge_engine.clients.triton_client import JudgeResult
from judge_engine.failures import GaveUp
from judge_engine.online.inline import InlineStage
from judge_engine.online.pipeline import Incoming, Rows, write_isolating
from judge_engine.online.shadow import ShadowScorer, failure_reason, shadow_judge
from schemas import Trace
from schemas.settings import Settings
from schemas.shadow import ShadowVerdict

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


class ScriptedJudge:
    """Answers each trace with ``labels[trace_id]`` (default A / pass) at ``confidence``, as model ``name`` version
    ``version``; ``error`` is raised instead, ``delay_s`` waited first."""

    def __init__(self, name="judge", version="1", labels=None, confidence=0.9, error=None, delay_s=0.0,
                 refuses=()):
        self.name, self.version = name, version
        self.labels = labels or {}
        self.confidence = confidence
        self.error = error
        self.delay_s = delay_s
        self.refuses = set(refuses)  # a call holding one of these trace ids is refused as bad input
        self.calls: list[list[str]] = []
        self.closed = False

    async def judge(self, items):
        items = list(items)
        self.calls.append([it.trace_id for it in items])
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        if self.refuses & {it.trace_id for it in items}:
            raise ValueError("INVALID_ARG: a kind this version was not trained for")
        return [JudgeResult(label=self.labels.get(it.trace_id, "A" if it.kind == "pairwise" else "pass"),
                            score=0.8, confidence=self.confidence if not callable(self.confidence)
                            else self.confidence(it), probs=(0.8, 0.2, 0.0), swap_consistent=True,
                            model_name=self.name, model_version=self.version, latency_ms=5.0)
                for it in items]

    async def close(self):
        self.closed = True


class Store:
    def __init__(self, log):
        self.rows: list[Rows] = []
        self.log = log

    async def write(self, rows):
        self.rows.append(rows)
        self.log.append("stored")


def _trace(i: int) -> Trace:
    if i % 2:
        return Trace(trace_id=f"t{i}", kind="pairwise", question="Which is right?", answer_a="4", answer_b="5",
                     timestamp=T0)
    return Trace(trace_id=f"t{i}", kind="pointwise", question="2 + 2?", answer="4", timestamp=T0)


def _messages(n: int, junk: bool = True) -> list[Incoming]:
    values = [_trace(i).to_bytes() for i in range(n)] + ([b"not json"] if junk else [])
    return [Incoming(value=v, key=None, topic="judgeline.traces", partition=0, offset=i, timestamp=T0)
            for i, v in enumerate(values)]


def _settings() -> Settings:
    return Settings(routing={"threshold": 0.7, "calibration_sample_rate": 0.0, "without_policy": "threshold"})


def _stage(live, shadow=None):
    log, sleeps = [], []

    async def publish(outbox):
        log.append("published")

    async def sleep(s):
        sleeps.append(s)

    store = Store(log)
    stage = InlineStage(_settings(), live, store, publish, sleep=sleep, shadow=shadow)
    return stage, store, log, sleeps


def _live():
    # the live judge doubts t0 and t3 (routed at threshold 0.7) and says B on t1
    return ScriptedJudge(labels={"t1": "B"}, confidence=lambda it: 0.5 if it.trace_id in ("t0", "t3") else 0.9)


def _as_compared(outcome):
    return ([v.model_dump(exclude={"judged_at"}) for v in outcome.verdicts],
            [(r.trace.trace_id, r.reason) for r in outcome.requests], [d.offset for d in outcome.dead_letters])


def test_the_candidate_scores_every_trace_apart_and_the_live_outcome_is_unchanged():
    baseline, *_ = _stage(_live())
    expected = _as_compared(asyncio.run(baseline.process(_messages(6))))

    candidate = ScriptedJudge(name="judge_shadow", version="2", labels={"t1": "A", "t2": "fail"}, confidence=0.6)
    stage, store, log, sleeps = _stage(_live(), ShadowScorer(candidate, timeout_s=5))
    outcome = asyncio.run(stage.process(_messages(6)))

    assert _as_compared(outcome) == expected  # verdicts, routing and dead letters as without shadow mode
    assert candidate.calls == [[f"t{i}" for i in range(6)]]  # every valid trace, in one call; the junk never
    assert log == ["stored", "published"] and sleeps == []
    (rows,) = store.rows
    shadow = {s.trace_id: s for s in rows.shadow_verdicts}
    assert sorted(shadow) == [f"t{i}" for i in range(6)]
    live = {v.trace_id: v for v in rows.verdicts}
    for trace_id, s in shadow.items():
        assert (s.judge_name, s.judge_version, s.confidence) == ("judge_shadow", "2", 0.6)
        v = live[trace_id]
        assert (s.live_judge_version, s.live_label, s.live_confidence, s.live_latency_ms) == (
            "1", v.label, v.confidence, v.latency_ms)
        assert s.trace_time == v.trace_time == T0
    assert (shadow["t1"].label, shadow["t1"].live_label) == ("A", "B")
    assert (shadow["t2"].label, shadow["t2"].live_label) == ("fail", "pass")
    assert stage.stats["shadow_verdicts"] == 6 and stage.stats["verdicts"] == 6


def test_a_candidate_that_is_not_loaded_fails_slow_or_refuses_costs_only_its_rows():
    cases = {
        "not_loaded": ScriptedJudge(error=GaveUp("triton judge_shadow", 1, RuntimeError(
            "[StatusCode.UNAVAILABLE] Request for unknown model: 'judge_shadow' is not found"))),
        "timeout": ScriptedJudge(delay_s=5),
        "refused": ScriptedJudge(error=ValueError("INVALID_ARG: row 0: kind not trained")),
        "unavailable": ScriptedJudge(error=ConnectionError("connection refused")),
    }
    baseline, *_ = _stage(_live())
    expected = _as_compared(asyncio.run(baseline.process(_messages(4))))
    for reason, candidate in cases.items():
        stage, store, log, sleeps = _stage(_live(), ShadowScorer(candidate, timeout_s=0.2))
        outcome = asyncio.run(stage.process(_messages(4)))
        assert _as_compared(outcome) == expected, reason
        assert log == ["stored", "published"] and sleeps == [], reason  # never held
        assert store.rows[0].shadow_verdicts == [] and len(store.rows[0].verdicts) == 4, reason
        assert stage.stats[f"shadow_failed_{reason}"] == 4 and stage.stats["shadow_verdicts"] == 0, reason


def test_a_trace_the_candidate_refuses_costs_only_its_own_row():
    candidate = ScriptedJudge(name="judge_shadow", version="2", refuses={"t2"})
    stage, store, log, sleeps = _stage(_live(), ShadowScorer(candidate, timeout_s=5))
    outcome = asyncio.run(stage.process(_messages(4)))
    assert len(outcome.verdicts) == 4 and sleeps == []
    assert sorted(s.trace_id for s in store.rows[0].shadow_verdicts) == ["t0", "t1", "t3"]
    assert candidate.calls[0] == ["t0", "t1", "t2", "t3"] and sorted(map(tuple, candidate.calls[1:])) == [
        ("t0",), ("t1",), ("t2",), ("t3",)]  # the batch, then each trace once
    assert stage.stats["shadow_failed_refused"] == 1 and stage.stats["shadow_verdicts"] == 3


def test_a_trace_without_a_live_verdict_keeps_its_shadow_row_with_no_live_label():
    live = ScriptedJudge(labels={"t0": "A"})  # "A" is no pointwise label: t0 becomes a judge dead letter
    stage, store, *_ = _stage(live, ShadowScorer(ScriptedJudge(name="judge_shadow", version="2"), timeout_s=5))
    outcome = asyncio.run(stage.process(_messages(2, junk=False)))
    assert [d.offset for d in outcome.dead_letters] == [0] and [v.trace_id for v in outcome.verdicts] == ["t1"]
    shadow = {s.trace_id: s for s in store.rows[0].shadow_verdicts}
    assert (shadow["t0"].label, shadow["t0"].live_label, shadow["t0"].live_judge_version) == ("pass", None, None)
    assert shadow["t1"].live_label == "A"


def test_an_unusable_candidate_answer_is_left_out_and_counted():
    candidate = ScriptedJudge(name="judge_shadow", version="2", labels={"t0": "B"})  # B is no pointwise label
    stage, store, *_ = _stage(_live(), ShadowScorer(candidate, timeout_s=5))
    asyncio.run(stage.process(_messages(2, junk=False)))
    assert [s.trace_id for s in store.rows[0].shadow_verdicts] == ["t1"]
    assert stage.stats["shadow_failed_unusable"] == 1 and stage.stats["shadow_verdicts"] == 1


class SwallowsCancellation(ScriptedJudge):
    """As the Triton client's retry wrapper does: a cancelled call surfaces as its own error, not CancelledError."""

    async def judge(self, items):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError as e:
            raise GaveUp("triton judge_shadow (1 items)", 1, e) from e


def test_a_call_past_the_timeout_counts_as_a_timeout_whatever_the_client_raises():
    stage, store, log, sleeps = _stage(_live(), ShadowScorer(SwallowsCancellation(), timeout_s=0.2))
    asyncio.run(stage.process(_messages(3, junk=False)))
    assert stage.stats["shadow_failed_timeout"] == 3 and store.rows[0].shadow_verdicts == []


def test_failure_reasons_follow_the_error():
    assert failure_reason(asyncio.TimeoutError()) == "timeout"
    assert failure_reason(RuntimeError("[StatusCode.DEADLINE_EXCEEDED] Deadline Exceeded")) == "timeout"
    assert failure_reason(RuntimeError("Request for unknown model: 'judge_shadow' version 9 is not at ready "
                                       "state")) == "not_loaded"
    assert failure_reason(ValueError("bad input")) == "refused"
    assert failure_reason(GaveUp("x", 1, ConnectionError("refused"))) == "unavailable"


def test_the_candidate_client_follows_the_shadow_settings():
    assert shadow_judge(Settings()) is None  # shadow mode off by default

    async def make():
        judge = shadow_judge(Settings(triton={"model_name": "j"}, shadow={"version": "3", "timeout_s": 2}))
        await judge.close()
        return judge.settings

    triton = asyncio.run(make())
    assert (triton.model_name, triton.model_version, triton.max_retries, triton.timeout_s) == ("j_shadow", "3", 0, 2)


def test_a_shadow_row_the_store_refuses_for_good_is_left_out_not_dead_lettered():
    verdict = ShadowVerdict(trace_id="t0", kind="pointwise", criterion="overall", label="pass", score=0.9,
                            confidence=0.9, judge_name="judge_shadow", judge_version="2", latency_ms=1.0,
                            trace_time=T0)

    class Refusing:
        def __init__(self):
            self.written = []

        async def write(self, rows):
            if rows.shadow_verdicts:
                raise ValueError("VIOLATED_CONSTRAINT")  # permanent under the failure policy
            self.written.append(rows)

    store = Refusing()
    letters = asyncio.run(write_isolating(store, Rows(shadow_verdicts=[verdict]), origin=lambda row: None))
    assert letters == [] and store.written == []


def test_the_worker_metrics_count_shadow_verdicts_by_version_and_failures_by_reason():
    from prometheus_client.parser import text_string_to_metric_families

    from streams.metrics import WorkerMetrics

    metrics = WorkerMetrics(Settings(kafka={"broker_reports_lag": False}), "inline")
    candidate = ScriptedJudge(name="judge_shadow", version="2")
    stage = InlineStage(_settings(), _live(), Store([]), lambda outbox: asyncio.sleep(0),
                        shadow=ShadowScorer(candidate, timeout_s=5), recorder=metrics)
    asyncio.run(stage.process(_messages(3)))
    candidate.error = RuntimeError("Request for unknown model: 'judge_shadow' has no available versions")
    asyncio.run(stage.process(_messages(5)))
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples}
    assert found[("judgeline_shadow_verdicts_total", (("judge_version", "2"),))] == 3
    assert found[("judgeline_shadow_failures_total", (("reason", "not_loaded"),))] == 5
    assert found[("judgeline_verdicts_total", (("label", "B"), ("source", "inline")))] == 2  # t1 twice: live intact
