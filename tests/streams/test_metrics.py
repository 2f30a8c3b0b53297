"""A worker's Prometheus metrics: the stages record through ``streams.metrics.WorkerMetrics`` (unit tests on the
stages with fakes), and a real ``judgeline worker``'s ``/metrics`` moves while traces flow (integration)."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from judge_engine.clients.triton_client import JudgeResult
from judge_engine.online.frontier_stage import FrontierStage
from judge_engine.online.inline import InlineStage
from judge_engine.online.pipeline import Incoming
from schemas import FrontierRequest, FrontierVerdict, Trace
from schemas.settings import Settings
from streams.metrics import WorkerMetrics, metric_names

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


class Judge:
    def __init__(self, confidence: dict[str, float]):
        self.confidence = confidence

    async def judge(self, items):
        return [JudgeResult(label="pass", score=0.9, confidence=self.confidence.get(t.trace_id, 0.95),
                            probs=(0.9, 0.1, 0.0), swap_consistent=True, model_name="judge", model_version="7",
                            latency_ms=3.0) for t in items]


class FlakyStore:
    def __init__(self, failures: int):
        self.failures = failures

    async def write(self, rows):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store down")


async def _no_sleep(_seconds):
    return None


async def _publish(_outbox):
    return None


def _trace(trace_id: str) -> Trace:
    return Trace(trace_id=trace_id, kind="pointwise", question="Capital of France?", answer="Paris.", timestamp=T0)


def _incoming(values) -> list[Incoming]:
    return [Incoming(value=v, key=None, topic="t", partition=0, offset=i, timestamp=T0) for i, v in enumerate(values)]


def test_the_inline_stage_records_consumed_verdicts_routes_dead_letters_latency_and_held_time():
    settings = Settings(routing={"threshold": 0.7, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    metrics = WorkerMetrics(settings, "inline")
    stage = InlineStage(settings, Judge({"t1": 0.3}), FlakyStore(failures=2), _publish, sleep=_no_sleep,
                        recorder=metrics)
    asyncio.run(stage.process(_incoming([_trace("t1").to_bytes(), _trace("t2").to_bytes(), b"junk"])))
    text = metrics.exposition().decode()
    assert value(text, "judgeline_messages_consumed_total", stage="inline") == 3
    assert value(text, "judgeline_verdicts_total", label="pass", source="inline") == 2
    assert value(text, "judgeline_routed_total", reason="low_confidence") == 1
    assert value(text, "judgeline_dead_letters_total", stage="parse") == 1
    assert value(text, "judgeline_batch_size_count", stage="inline") == 1
    assert value(text, "judgeline_batch_size_sum", stage="inline") == 3
    assert value(text, "judgeline_call_seconds_count", stage="inline", dependency="judge") == 1
    assert value(text, "judgeline_call_seconds_count", stage="inline", dependency="store") == 1
    assert value(text, "judgeline_call_seconds_count", stage="inline", dependency="broker") == 1
    assert value(text, "judgeline_held_seconds_total", stage="inline", dependency="store") > 0
    assert value(text, "judgeline_held_seconds_total", stage="inline", dependency="judge") == 0
    assert value(text, "judgeline_served_judge_info", judge_name="judge", judge_version="7") == 1
    assert value(text, "judgeline_routing_policy_version") == 0  # no routing policy published: the settings' rule
    assert value(text, "judgeline_routing_settings_info", threshold="0.7", calibration_sample_rate="0.0",
                 without_policy="threshold", judge_unavailable="hold") == 1
    assert value(text, "judgeline_stage_events_total", stage="inline", event="batches") == 1
    # every sample's name is one the dashboards may use
    assert {name for name, _ in samples(text)} <= set(metric_names())


def test_verdicts_and_dead_letters_are_counted_per_label_set_in_one_batch():
    from judge_engine.online.pipeline import Rows
    from schemas import DeadLetter, Verdict

    def verdict(i: int, label: str, source: str) -> Verdict:
        return Verdict(trace_id=f"t{i}", kind="pointwise", criterion="helpfulness", trace_time=T0, label=label,
                       score=0.5, confidence=0.9, judge_name="judge", judge_version="1", source=source,
                       latency_ms=1.0)

    def letter(i: int, stage: str) -> DeadLetter:
        return DeadLetter(raw=b"x", error="bad", stage=stage, topic="t", partition=0, offset=i, message_time=T0)

    metrics = WorkerMetrics(Settings(), "inline")
    verdicts = [verdict(0, "pass", "inline"), verdict(1, "fail", "inline"), verdict(2, "pass", "inline"),
                verdict(3, "pass", "frontier"), verdict(4, "pass", "inline")]
    metrics.batch("inline", 9, Rows(verdicts=verdicts,
                                    dead_letters=[letter(5, "parse"), letter(6, "judge"), letter(7, "parse")]))
    metrics.batch("inline", 1, Rows(verdicts=[verdict(8, "fail", "inline")]))
    text = metrics.exposition().decode()
    assert value(text, "judgeline_verdicts_total", label="pass", source="inline") == 3
    assert value(text, "judgeline_verdicts_total", label="fail", source="inline") == 2
    assert value(text, "judgeline_verdicts_total", label="pass", source="frontier") == 1
    assert value(text, "judgeline_dead_letters_total", stage="parse") == 2
    assert value(text, "judgeline_dead_letters_total", stage="judge") == 1


def test_a_new_judge_version_replaces_the_served_judge_sample():
    settings = Settings(routing={"calibration_sample_rate": 0.0})
    metrics = WorkerMetrics(settings, "inline")
    metrics._served("judge", "7")
    metrics._served("judge", "8")
    text = metrics.exposition().decode()
    assert value(text, "judgeline_served_judge_info", judge_name="judge", judge_version="8") == 1
    assert ("judgeline_served_judge_info", (("judge_name", "judge"), ("judge_version", "7"))) not in samples(text)


class Frontier:
    async def judge_many(self, requests):
        return [FrontierVerdict(trace_id=r.trace.trace_id, kind="pointwise", criterion=r.trace.criterion,
                                judge_name="gpt-4", status="ok" if i == 0 else "budget_exhausted",
                                label="fail" if i == 0 else None, confidence=1.0, request_reason=r.reason,
                                input_tokens=100, output_tokens=10, cost_usd=0.25, attempts=2,
                                trace_time=T0) for i, r in enumerate(requests)]


class StoreWith:
    """A store that already holds a frontier verdict for ``stored`` (a redelivered request)."""

    def __init__(self, stored: FrontierVerdict | None):
        self.stored = stored

    async def write(self, rows):
        return None

    async def frontier_verdicts(self, trace_ids, model):
        return [self.stored] if self.stored is not None and self.stored.trace_id in trace_ids else []


def test_the_frontier_stage_records_calls_tokens_spend_and_not_the_reused_verdicts():
    settings = Settings()
    requests = [FrontierRequest(trace=_trace(f"f{i}"), reason="calibration_sample") for i in range(3)]
    stored = FrontierVerdict(trace_id="f2", kind="pointwise", criterion="overall", judge_name="gpt-4", label="pass",
                             request_reason="calibration_sample", input_tokens=999, cost_usd=9.0, trace_time=T0)
    metrics = WorkerMetrics(settings, "frontier")
    stage = FrontierStage(settings, Frontier(), StoreWith(stored), _publish, sleep=_no_sleep, recorder=metrics)
    asyncio.run(stage.process(_incoming([r.to_bytes() for r in requests])))
    text = metrics.exposition().decode()
    assert value(text, "judgeline_messages_consumed_total", stage="frontier") == 3
    assert value(text, "judgeline_frontier_calls_total", status="ok") == 1
    assert value(text, "judgeline_frontier_calls_total", status="budget_exhausted") == 1
    assert value(text, "judgeline_frontier_tokens_total", direction="input") == 200  # not the reused 999
    assert value(text, "judgeline_frontier_spend_usd_total") == pytest.approx(0.5)
    assert value(text, "judgeline_frontier_attempts_total") == 4
    assert value(text, "judgeline_frontier_budget_usd") == settings.frontier.budget_usd


def test_lag_is_exported_only_where_the_broker_reports_it():
    class TP(tuple):
        topic = property(lambda self: self[0])
        partition = property(lambda self: self[1])

    class Consumer:
        _committed_offset = {TP(("judgeline.traces", 0)): 40}

        def assignment(self):
            return set(self._committed_offset) | {TP(("judgeline.traces", 1))}

        def highwater(self, tp):
            return 100 if tp.partition == 0 else 7

    class App:
        consumer = Consumer()

    truthful = WorkerMetrics(Settings(kafka={"broker_reports_lag": True}), "inline")
    truthful.watch_consumer(App())
    text = truthful.exposition().decode()
    assert value(text, "judgeline_consumer_lag", topic="judgeline.traces", partition="0") == 60
    assert value(text, "judgeline_consumer_lag", topic="judgeline.traces", partition="1") == 7
    tansu = WorkerMetrics(Settings(kafka={"broker_reports_lag": False}), "inline")
    tansu.watch_consumer(App())
    assert "judgeline_consumer_lag" not in tansu.exposition().decode()


def _scrape(settings: Settings, record) -> str:
    with urllib.request.urlopen(f"http://{settings.stack.bind_host}:{record.ports['web']}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


@pytest.mark.integration
def test_a_real_workers_metrics_move_while_traces_flow(stack, store):
    from fault_support import FaultRun

    from stack.workers import wait_until

    _, base = store
    # without a routing policy, the settings' rule: about half the traces routed (the calibration sample)
    run = FaultRun.create(base, routing={"calibration_sample_rate": 0.5, "without_policy": "threshold"})
    try:
        worker = run.worker("inline", stub_ms=1.0)
        before = _scrape(run.settings, worker)
        assert value(before, "judgeline_messages_consumed_total", stage="inline") == 0
        assert "judgeline_consumer_lag" not in before  # the embedded broker's high watermark is wrong
        traces = [_trace(f"m-{uuid.uuid4().hex[:8]}") for _ in range(25)]
        bad = run.send(traces, malformed=3)
        run.wait_accounted(len(traces) + len(bad), timeout_s=120)
        assert wait_until(lambda: value(_scrape(run.settings, worker), "judgeline_messages_consumed_total",
                                        stage="inline") == 28, 30)
        after = _scrape(run.settings, worker)
        assert value(after, "judgeline_verdicts_total", label="pass", source="inline") == 25
        assert sum(v for (name, labels), v in samples(after).items() if name == "judgeline_dead_letters_total") == 3
        assert value(after, "judgeline_served_judge_info", judge_name="constant-stub", judge_version="stub") == 1
        assert value(after, "judgeline_call_seconds_count", stage="inline", dependency="store") >= 1
        assert value(after, "judgeline_batch_size_sum", stage="inline") == 28
        # the routed traces are stored with their text (the annotation queue's), the others are not
        routed = run.rows("SELECT trace_id FROM {db}.verdicts FINAL WHERE route_reason != ''")
        assert 0 < len(routed) < 25
        assert sorted(run.rows("SELECT trace_id FROM {db}.traces FINAL")) == sorted(routed)
        assert sum(v for (name, _), v in samples(after).items() if name == "judgeline_routed_total") == len(routed)
    finally:
        run.stop()


def test_a_failing_recorder_is_logged_and_the_others_are_still_told(caplog):
    from judge_engine.online.pipeline import Recorder, Recorders, Rows

    class Broken(Recorder):
        def batch(self, stage, consumed, rows):
            raise RuntimeError("boom")

    settings = Settings()
    metrics = WorkerMetrics(settings, "inline")
    Recorders(Broken(), metrics).batch("inline", 5, Rows())
    assert value(metrics.exposition().decode(), "judgeline_messages_consumed_total", stage="inline") == 5
    assert "recorder Broken failed in batch" in caplog.text
