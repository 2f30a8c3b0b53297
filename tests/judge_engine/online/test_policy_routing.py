"""The inline worker's routing under a routing policy: the trace's segment rule decides, every verdict records the
policy version, threshold and sample rate, no policy means route-all (or the settings' threshold when asked), and a
new policy applies from the next batch of the same stage."""

import asyncio
from datetime import datetime, timezone

from judge_engine.clients.triton_client import JudgeResult
from judge_engine.online.inline import InlineStage, judge_batch
from judge_engine.online.pipeline import Incoming
from judge_engine.online.policy import Rule, RoutingPolicy, Segment
from judge_engine.online.routing import decide, in_calibration_sample, route
from schemas.settings import RoutingSettings, Settings
from schemas.trace import Trace

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
EVERYTHING = Segment.everything()


def policy(version: int, *rules: Rule) -> RoutingPolicy:
    base = Rule(EVERYTHING, 1.0, 1.0, True, "unseen_segment", {"n": 0})
    return RoutingPolicy(version, T0, (base, *rules), 0.05, 0.95)


def trace(trace_id: str, app: str = "chat", criterion: str = "overall") -> Trace:
    return Trace(trace_id=trace_id, app=app, kind="pointwise", criterion=criterion, question="q?", answer="a.")


class Judge:
    def __init__(self, confidence: float = 0.9, novelty: float | None = None):
        self.confidence, self.novelty = confidence, novelty

    async def judge(self, items):
        return [JudgeResult(label="pass", score=0.9, confidence=self.confidence, probs=(0.9, 0.1, 0.0),
                            swap_consistent=True, model_name="judge", model_version="3", latency_ms=1.0,
                            novelty=self.novelty) for _ in items]


def msgs(*traces):
    return [Incoming(value=t.to_bytes(), key=None, topic="traces", partition=0, offset=i, timestamp=T0)
            for i, t in enumerate(traces)]


def test_without_a_policy_the_default_routes_everything_and_threshold_mode_is_the_old_rule():
    t = trace("t-1")
    d = decide(0.99, t, RoutingSettings(), None)
    assert (d.reason, d.policy_version, d.threshold, d.sample_rate) == ("route_all", 0, 1.0, 1.0)
    old = RoutingSettings(without_policy="threshold", threshold=0.7, calibration_sample_rate=0.2)
    for i in range(50):
        t = trace(f"t-{i}")
        for c in (0.5, 0.69, 0.7, 0.99):
            d = decide(c, t, old, None)
            assert d.reason == route(c, t.trace_id, old) and (d.threshold, d.sample_rate) == (0.7, 0.2)


def test_the_segment_rule_decides_with_fallback_to_the_app_rule():
    app_rule = Rule(Segment("default", "chat", "pointwise", "*"), 0.6, 0.0, False, "fitted", {})
    fine_rule = Rule(Segment("default", "chat", "pointwise", "safety"), 0.95, 0.0, False, "fitted", {})
    p = policy(4, app_rule, fine_rule)
    s = RoutingSettings()
    assert decide(0.7, trace("a", criterion="overall"), s, p).reason is None  # app rule: 0.7 >= 0.6
    d = decide(0.7, trace("b", criterion="safety"), s, p)
    assert (d.reason, d.policy_version, d.threshold) == ("low_confidence", 4, 0.95)
    d = decide(0.99, trace("c", app="new-app"), s, p)  # unseen app: the '*' rule routes it
    assert (d.reason, d.threshold, d.sample_rate) == ("route_all", 1.0, 1.0)


def test_the_rule_sample_rate_and_novelty_route_confident_traces():
    rule = Rule(Segment("default", "chat", "pointwise", "*"), 0.5, 0.3, False, "fitted", {})
    p = policy(2, rule)
    ids = [f"n-{i}" for i in range(200)]
    reasons = {i: decide(0.9, trace(i), RoutingSettings(), p).reason for i in ids}
    assert {i for i, r in reasons.items() if r == "calibration_sample"} == {i for i in ids if in_calibration_sample(i, 0.3)}
    s = RoutingSettings(novelty_threshold=0.8)
    assert decide(0.9, trace("x"), s, p, novelty=0.81).reason == "novel"
    assert decide(0.9, trace("x"), s, p, novelty=0.79).reason in (None, "calibration_sample")
    assert decide(0.4, trace("x"), s, p, novelty=0.99).reason == "low_confidence"


def test_verdicts_record_the_policy_and_a_new_policy_applies_from_the_next_batch():
    settings = Settings()
    current = {"policy": policy(1, Rule(Segment("default", "chat", "pointwise", "*"), 0.0, 0.0, False, "f", {}))}
    stored = []

    class Store:
        async def write(self, rows):
            stored.extend(rows.verdicts)

    async def publish(outbox):
        return None

    stage = InlineStage(settings, Judge(0.9, novelty=0.25), Store(), publish, policy=lambda: current["policy"])
    first = asyncio.run(stage.process(msgs(trace("v1-a"), trace("v1-b"))))
    assert [(v.route_reason, v.policy_version, v.route_threshold, v.sample_rate, v.novelty)
            for v in first.verdicts] == [(None, 1, 0.0, 0.0, 0.25)] * 2 and first.requests == []
    current["policy"] = policy(2, Rule(Segment("default", "chat", "pointwise", "*"), 1.0, 1.0, True, "drift", {}))
    second = asyncio.run(stage.process(msgs(trace("v2-a"))))
    assert [(v.route_reason, v.policy_version) for v in second.verdicts] == [("route_all", 2)]
    assert [(r.reason, r.inline_verdict.policy_version) for r in second.requests] == [("route_all", 2)]
    assert [v.policy_version for v in stored] == [1, 1, 2]


def test_judge_batch_without_policy_routes_everything_by_default():
    out = asyncio.run(judge_batch(msgs(trace("d-1")), Judge(0.99), Settings()))
    assert [(v.route_reason, v.policy_version, v.novelty) for v in out.verdicts] == [("route_all", 0, None)]
    assert [r.reason for r in out.requests] == ["route_all"]
