"""Routing policy: the Clopper-Pearson bound, fallback, cold start, the fit, adaptive sampling, drift, JSON."""

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from judge_engine.online.policy import (
    DriftDetector,
    Evidence,
    Rule,
    RoutingPolicy,
    Segment,
    apply_budget,
    cp_upper,
    evidence_weight,
    fit_policy,
    kish_n,
    sample_rate_for,
    tighten,
)
from schemas.trace import Trace

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SEG = Segment("acme", "chat", "pairwise", "overall")
FIT = dict(accepted_error_rate=0.05, min_evidence=50, confidence_level=0.95, base_sample_rate=0.05,
           max_sample_rate=0.3, version=1, now=T0)


def ev(confidence, agrees, segment=SEG, weight=1.0, at=T0, gold=None):
    return Evidence(segment, confidence, "A", "A" if agrees else "B", gold, weight, at)


def test_cp_upper_bound_matches_known_values():
    # zero errors: the bound is 1 - alpha**(1/n) ("rule of three" neighbourhood); 59 items pass 5 %, 58 do not
    assert cp_upper(0, 59, 0.95) == pytest.approx(1 - 0.05 ** (1 / 59), rel=1e-9)
    assert cp_upper(0, 59, 0.95) < 0.05 < cp_upper(0, 58, 0.95)
    # tabulated exact binomial upper limits (one-sided 95 %): 3 of 100 -> 0.0757, 10 of 50 -> 0.3160
    assert cp_upper(3, 100, 0.95) == pytest.approx(0.0757, abs=5e-4)
    assert cp_upper(10, 50, 0.95) == pytest.approx(0.3160, abs=1e-3)
    assert cp_upper(5, 5, 0.95) == 1.0 and cp_upper(0, 0, 0.95) == 1.0


def test_kish_effective_n():
    assert kish_n([1.0] * 10) == pytest.approx(10)
    assert kish_n([20.0] * 5 + [1.0] * 100) == pytest.approx((200.0 ** 2) / (400 * 5 + 100))


def test_fallback_chain_and_rule_lookup():
    assert [str(s) for s in SEG.fallbacks()] == [
        "acme/chat/pairwise/overall", "acme/chat/pairwise/*", "acme/*/pairwise/*", "*/*/pairwise/*", "*/*/*/*"]
    assert Segment.everything().fallbacks() == (Segment.everything(),)
    app_rule = Rule(SEG.app_level(), 0.8, 0.05, False, "fitted", {})
    policy = RoutingPolicy.cold_start().with_rule(app_rule)
    assert policy.rule_for(SEG) == app_rule  # the criterion falls back to its app
    assert policy.rule_for(Segment("acme", "other", "pairwise", "overall")).route_all  # another app: the default
    trace = Trace(trace_id="t1", tenant="acme", app="chat", kind="pairwise", criterion="overall", question="q",
                  answer_a="a", answer_b="b")
    assert Segment.of(trace) == SEG


def test_cold_start_routes_everything():
    policy = RoutingPolicy.cold_start()
    for conf in (0.0, 0.5, 0.99, 1.0):
        rule = policy.rule_for(SEG)
        assert rule.route(conf, f"t{conf}") == "route_all" and not rule.accepts(conf)


def test_rule_route_reasons():
    rule = Rule(SEG, 0.8, 0.0, False, "fitted", {})
    assert rule.route(0.5, "x") == "low_confidence"
    assert rule.route(0.9, "x") is None
    assert rule.route(0.9, "x", novel=True) == "novel"
    assert Rule(SEG, 0.8, 1.0, False, "fitted", {}).route(0.9, "x") == "calibration_sample"
    assert Rule(SEG, 1.5, 0.0, False, "x", {}).route(0.99, "x") == "route_all"


def _stream(n, rng, *, seg=SEG, good_above=0.8):
    """Confident items (>= good_above) agree 99 % of the time, the rest 60 %."""
    out = []
    for _ in range(n):
        c = rng.uniform(0.5, 1.0)
        out.append(ev(c, rng.random() < (0.99 if c >= good_above else 0.6), seg))
    return out


def test_fit_finds_the_lowest_threshold_meeting_the_bound():
    rng = random.Random(1)
    policy = fit_policy(_stream(3000, rng), previous=None, **FIT)
    rule = policy.rule_for(SEG)
    assert not rule.route_all and rule.threshold == pytest.approx(0.8)
    assert rule.evidence["error_upper_bound"] <= 0.05 and rule.evidence["agreement_above_threshold"] >= 0.97
    assert rule.evidence["n"] == 3000 and rule.evidence["buckets"]
    # every coarser level (another app, tenant, kind) routes everything: nothing pooled across apps
    assert policy.rule_for(Segment("acme", "new-app", "pairwise", "overall")).route_all
    assert policy.rule_for(Segment.everything()).route_all


def test_too_little_evidence_routes_all_and_fine_segments_fall_back():
    rng = random.Random(2)
    thin = fit_policy(_stream(30, rng), previous=None, **FIT)
    assert thin.rule_for(SEG).route_all and thin.rule_for(SEG).reason == "too_little_evidence"
    # a thin fine segment takes its app-level pool (here fed by another criterion of the same app)
    other = Segment("acme", "chat", "pairwise", "helpfulness")
    policy = fit_policy(_stream(3000, rng, seg=other) + _stream(10, rng), previous=None, **FIT)
    assert SEG not in {r.segment for r in policy.rules} and policy.rule_for(SEG).segment == SEG.app_level()
    assert not policy.rule_for(SEG).route_all


def test_a_bad_segment_routes_all_when_no_threshold_meets_the_bound():
    rng = random.Random(3)
    bad = [ev(rng.uniform(0.5, 1.0), rng.random() < 0.7) for _ in range(2000)]
    assert fit_policy(bad, previous=None, **FIT).rule_for(SEG).reason == "bound_not_met"


def test_gold_outranks_the_frontier_and_weights_count():
    # the frontier agrees everywhere, gold says the inline verdict is wrong: the gold label wins
    items = [Evidence(SEG, 0.95, "A", "A", "B", 1.0, T0) for _ in range(500)]
    assert fit_policy(items, previous=None, **FIT).rule_for(SEG).route_all
    # weighted sample: 60 agreeing items at weight 20 are only 60 effective items: the bound still passes
    items = [ev(0.95, True, weight=evidence_weight("calibration_sample", 0.05)) for _ in range(60)]
    rule = fit_policy(items, previous=None, **FIT).rule_for(SEG)
    assert not rule.route_all and rule.evidence["accepted_n_eff"] == pytest.approx(60)


def test_adaptive_rate_decays_to_base():
    rates = [sample_rate_for(n, base_sample_rate=0.05, max_sample_rate=0.3, min_evidence=50)
             for n in (0, 10, 50, 200, 1000, 100000)]
    assert rates[0] == pytest.approx(0.3) and rates[2] == pytest.approx(0.175)
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] == pytest.approx(0.05, abs=1e-3)
    with pytest.raises(ValueError, match="base_sample_rate"):
        sample_rate_for(0, base_sample_rate=0.5, max_sample_rate=0.3, min_evidence=50)


def test_budget_scales_the_extra_sampling():
    policy = RoutingPolicy.cold_start().with_rule(Rule(SEG, 0.8, 0.3, False, "fitted", {}))
    same, spend = apply_budget(policy, {SEG: 0.5}, base_sample_rate=0.05, extra_budget=0.5)
    assert same == policy and spend == pytest.approx(0.125)
    capped, spend = apply_budget(policy, {SEG: 0.5}, base_sample_rate=0.05, extra_budget=0.05)
    assert spend == pytest.approx(0.05) and capped.rule_for(SEG).sample_rate == pytest.approx(0.15)


def _fitted_policy():
    return fit_policy(_stream(3000, random.Random(4)), previous=None, **FIT)


def test_a_broken_confidence_curve_raises_the_alarm_within_tens_of_traces():
    policy = _fitted_policy()
    detector = DriftDetector(policy)
    rng = random.Random(5)
    alarm, n = None, 0
    while alarm is None and n < 500:
        n += 1  # confident verdicts that now agree only 40 % of the time
        alarm = detector.update(ev(rng.uniform(0.85, 1.0), rng.random() < 0.4, at=T0 + timedelta(seconds=n)))
    assert alarm is not None and n <= 40, n
    assert alarm.segment == SEG and alarm.observed_agreement < 0.6 < alarm.expected_agreement


def test_no_alarm_when_the_curve_holds():
    policy = _fitted_policy()
    detector = DriftDetector(policy)
    held = _stream(3000, random.Random(6))
    assert [a for a in (detector.update(e) for e in held) if a is not None] == []


def test_tighten_routes_the_segment_and_forgets_its_old_evidence():
    policy = _fitted_policy()
    alarm_at = T0 + timedelta(hours=1)
    tight = tighten(policy, SEG.app_level(), at=alarm_at)
    assert tight.version == policy.version + 1 and tight.rule_for(SEG).route_all
    old = _stream(3000, random.Random(7))
    refit = fit_policy(old, previous=tight, **FIT)
    assert refit.rule_for(SEG).route_all  # pre-alarm evidence is ignored
    new = [replace_time(e, alarm_at + timedelta(seconds=1)) for e in old]
    assert not fit_policy(new, previous=refit, **FIT).rule_for(SEG).route_all  # the reset carries forward


def replace_time(e, at):
    return Evidence(e.segment, e.confidence, e.inline_label, e.frontier_label, e.gold_label, e.weight, at)


def test_json_round_trip_and_strict_errors():
    policy = _fitted_policy()
    policy = tighten(policy, SEG, at=T0 + timedelta(minutes=5))
    assert RoutingPolicy.from_json(policy.to_json()) == policy
    body = json.loads(policy.to_json())
    cases = [
        ({**body, "extra": 1}, "policy.extra is not a policy field"),
        ({k: v for k, v in body.items() if k != "version"}, "policy.version is missing"),
        ({**body, "version": "3"}, "policy.version must be a non-negative integer"),
        ({**body, "created_at": "2026-01-01T00:00:00"}, "policy.created_at must carry a UTC offset"),
        ({**body, "rules": [r for r in body["rules"] if r["segment"] != "*/*/*/*"]}, "'\\*/\\*/\\*/\\*' rule"),
        ({**body, "rules": [{**body["rules"][0], "threshold": "high"}]}, r"policy.rules\[0\].*rule.threshold"),
        ({**body, "rules": [{**body["rules"][0], "segment": "a/b"}]}, r"policy.rules\[0\].segment"),
        ({**body, "rules": [{**body["rules"][0], "sample_rate": 2}]}, "rule.sample_rate must lie in"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            RoutingPolicy.from_json(json.dumps(bad).encode())
    with pytest.raises(ValueError, match="not valid JSON"):
        RoutingPolicy.from_json(b"{nope")


def test_a_segment_whose_app_holds_a_slash_or_percent_survives_the_policy_json():
    seg = Segment("team/a", "LLMBar Processed/FairEval", "pairwise", "50%/overall")
    assert str(seg) == "team%2Fa/LLMBar Processed%2FFairEval/pairwise/50%25%2Foverall"
    assert Segment.parse(str(seg)) == seg
    policy = RoutingPolicy.cold_start(version=3, created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    rule = policy.rule_for(Segment.everything())
    fitted = RoutingPolicy(version=4, created_at=policy.created_at,
                           rules=policy.rules + (rule.__class__(seg, 0.9, 0.05, False, "fitted", {}),),
                           accepted_error_rate=0.05, confidence_level=0.95)
    back = RoutingPolicy.from_json(fitted.to_json())
    assert back.rule_for(seg).segment == seg and back.rule_for(seg).threshold == 0.9
