"""`judgeline eval --policy`: the streaming routing controller simulated over judged items taken in order.

Contract:
- Uses the live controller's own code (``judge_engine.online.policy``: ``fit_policy``, ``Rule.route``, the adaptive
  sample rate, ``apply_budget``, ``DriftDetector``, ``tighten``); nothing here decides routing on its own.
- Start: the policy fitted on ``prior`` only (the judge version's validation evidence, ``validation_evidence``),
  nothing from the items it is scored on. A segment the prior does not cover routes everything.
- Items arrive in order, one per simulated second. Each is routed under the current policy; a routed item
  (low confidence, route_all, novel, calibration sample) takes the recorded teacher verdict as the frontier's
  (an item without one keeps its inline verdict, as a failed frontier call would) and that verdict becomes
  evidence (weight 1/sample rate for a calibration-sample item). The human label is never evidence: the
  controller does not see the label an item is scored on, nor a teacher verdict the stream did not pay for.
  Every frontier verdict feeds the drift detector at once (an alarm tightens the segment at once); the policy is
  re-fitted from all evidence so far every ``update_every`` items.
- The result: ``accuracy_vs_human`` (final verdicts), ``frontier_fraction``, ``accepted_accuracy_vs_teacher`` and
  ``accepted_accuracy_vs_human`` (the inline verdicts not routed), ``teacher_accuracy_vs_human`` (the frontier alone,
  same items), ``extra_sample_fraction`` (traffic sampled only because the adaptive rate exceeded the base rate),
  counts by route reason, alarms, per-segment figures (``segments``) and the same figures per window of items
  (``over_time``). Rates are fractions; undefined ones are None.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from judge_engine.evaluation import plots
from judge_engine.online.policy import (
    DriftDetector,
    Evidence,
    RoutingPolicy,
    Segment,
    apply_budget,
    evidence_weight,
    fit_policy,
    tighten,
)
from judge_engine.online.routing import sample_point
from schemas.settings import RoutingSettings

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SimConfig:
    accepted_error_rate: float = 0.05
    confidence_level: float = 0.95
    min_evidence: int = 100
    base_sample_rate: float = 0.05
    max_sample_rate: float = 0.3
    extra_sample_budget: float = 0.1
    update_every: int = 50
    drift_odds_ratio: float = 3.0
    drift_h: float = 8.0

    @classmethod
    def from_settings(cls, routing: RoutingSettings, **overrides: Any) -> "SimConfig":
        fields = {name: getattr(routing, name) for name in cls.__dataclass_fields__ if hasattr(routing, name)}
        fields.setdefault("base_sample_rate", routing.calibration_sample_rate)
        return cls(**{**fields, **overrides})


@dataclass(frozen=True)
class StreamItem:
    trace_id: str
    segment: Segment
    label: str
    confidence: float
    teacher: str | None
    human: str | None
    novel: bool = False


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


class _Tally:
    def __init__(self) -> None:
        self.c: Counter = Counter()

    def add(self, item: StreamItem, final: str, accepted: bool) -> None:
        c = self.c
        c["n"] += 1
        c["routed"] += not accepted
        if item.human is not None:
            c["human_n"] += 1
            c["final_ok"] += final == item.human
            if item.teacher is not None:
                c["teacher_human_n"] += 1
                c["teacher_ok"] += item.teacher == item.human
        if accepted:
            c["accepted"] += 1
            if item.teacher is not None:
                c["acc_teacher_n"] += 1
                c["acc_teacher_ok"] += item.label == item.teacher
            if item.human is not None:
                c["acc_human_n"] += 1
                c["acc_human_ok"] += item.label == item.human

    def figures(self) -> dict[str, Any]:
        c = self.c
        return {"n": c["n"], "accuracy_vs_human": _rate(c["final_ok"], c["human_n"]),
                "frontier_fraction": _rate(c["routed"], c["n"]), "accepted": c["accepted"],
                "accepted_accuracy_vs_teacher": _rate(c["acc_teacher_ok"], c["acc_teacher_n"]),
                "accepted_accuracy_vs_human": _rate(c["acc_human_ok"], c["acc_human_n"]),
                "teacher_accuracy_vs_human": _rate(c["teacher_ok"], c["teacher_human_n"])}


def simulate(stream: Sequence[StreamItem], prior: Sequence[Evidence], cfg: SimConfig = SimConfig(),
             window: int | None = None) -> dict[str, Any]:
    fit = dict(accepted_error_rate=cfg.accepted_error_rate, min_evidence=cfg.min_evidence,
               confidence_level=cfg.confidence_level, base_sample_rate=cfg.base_sample_rate,
               max_sample_rate=cfg.max_sample_rate)
    evidence: list[Evidence] = list(prior)
    traffic: Counter = Counter(e.segment for e in prior)
    version = 1
    policy = _budgeted(fit_policy(evidence, previous=None, version=version, now=START, **fit), traffic, cfg)
    detector = DriftDetector(policy, odds_ratio=cfg.drift_odds_ratio, h=cfg.drift_h)
    total, by_segment = _Tally(), defaultdict(_Tally)
    windows: list[_Tally] = []
    window = window or max(cfg.update_every, len(stream) // 20 or 1)
    reasons: Counter = Counter()
    extra_sampled = 0
    alarms: list[dict[str, Any]] = []
    for i, item in enumerate(stream):
        now = START + timedelta(seconds=i + 1)
        if i and i % cfg.update_every == 0:
            version += 1
            policy = _budgeted(fit_policy(evidence, previous=policy, version=version, now=now, **fit), traffic, cfg)
            detector.set_policy(policy)
        traffic[item.segment] += 1
        rule = policy.rule_for(item.segment)
        reason = rule.route(item.confidence, item.trace_id, novel=item.novel)
        reasons[reason or "accepted"] += 1
        if reason == "calibration_sample" and sample_point(item.trace_id) >= cfg.base_sample_rate:
            extra_sampled += 1
        accepted = reason is None
        final = item.label if accepted or item.teacher is None else item.teacher
        if i % window == 0:
            windows.append(_Tally())
        for tally in (total, by_segment[item.segment], windows[-1]):
            tally.add(item, final, accepted)
        if reason is None or item.teacher is None:
            continue
        e = Evidence(item.segment, item.confidence, item.label, item.teacher, None,
                     evidence_weight(reason, rule.sample_rate), now)
        evidence.append(e)
        alarm = detector.update(e)
        if alarm is not None:
            version += 1
            policy = tighten(policy, alarm.segment, at=now, version=version, max_sample_rate=cfg.max_sample_rate)
            detector.set_policy(policy)
            alarms.append({"segment": str(alarm.segment), "at_item": i, "observations": alarm.observations,
                           "observed_agreement": round(alarm.observed_agreement, 4),
                           "expected_agreement": round(alarm.expected_agreement, 4)})
    segments = {}
    for seg, tally in sorted(by_segment.items()):
        rule = policy.rule_for(seg)
        segments[str(seg)] = {**tally.figures(), "final_rule": str(rule.segment), "final_threshold": rule.threshold,
                              "final_route_all": rule.route_all, "final_reason": rule.reason,
                              "final_sample_rate": rule.sample_rate,
                              "final_error_upper_bound": rule.evidence.get("error_upper_bound")}
    over_time = []
    for w, tally in enumerate(windows):
        over_time.append({"from_item": w * window, **tally.figures()})
    return {**total.figures(), "route_reasons": dict(reasons), "extra_sample_fraction": _rate(extra_sampled,
            len(stream)), "policy_versions": version, "alarms": alarms, "segments": segments,
            "over_time": over_time, "window": window, "prior_evidence": len(prior),
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "final_policy": policy.to_json().decode()}


def _budgeted(policy: RoutingPolicy, traffic: Counter, cfg: SimConfig) -> RoutingPolicy:
    total = sum(traffic.values())
    if not total:
        return policy
    share = {seg: n / total for seg, n in traffic.items()}
    return apply_budget(policy, share, base_sample_rate=cfg.base_sample_rate, extra_budget=cfg.extra_sample_budget)[0]


def plot_over_time(report: dict, path: Path, title: str) -> Path:
    """Accuracy vs human, frontier fraction and the accepted verdicts' agreement per window of items."""
    rows = report["over_time"]
    nan = float("nan")

    def series(key: str):
        return [(r["from_item"], nan if r[key] is None else r[key]) for r in rows]

    lines = {"final accuracy vs human": series("accuracy_vs_human"),
             "frontier fraction": series("frontier_fraction"),
             "accepted: agreement with teacher": series("accepted_accuracy_vs_teacher"),
             "accepted: agreement with human": series("accepted_accuracy_vs_human")}
    return plots.curves(lines, path, title, f"item (window of {report['window']})", "fraction")


def format_policy(report: dict, teacher: str) -> str:
    p = lambda v: "  n/a" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
    rows = [f"  routing policy (simulated controller, update every {report['config']['update_every']} items, "
            f"accepted error <= {report['config']['accepted_error_rate']:.0%} at "
            f"{report['config']['confidence_level']:.0%} CP bound):",
            f"    final accuracy vs human {p(report['accuracy_vs_human'])}   ({teacher} alone "
            f"{p(report['teacher_accuracy_vs_human'])})",
            f"    frontier fraction       {p(report['frontier_fraction'])}   (extra calibration sampling "
            f"{p(report['extra_sample_fraction'])})",
            f"    accepted inline verdicts: {report['accepted']}, agreement with {teacher} "
            f"{p(report['accepted_accuracy_vs_teacher'])}, with human {p(report['accepted_accuracy_vs_human'])}",
            f"    drift alarms: {len(report['alarms'])}; policy versions: {report['policy_versions']}",
            "    segment                                   n   routed  accepted vs teacher  final threshold"]
    for seg, s in report["segments"].items():
        thr = "route all" if s["final_route_all"] else f"{s['final_threshold']:.2f}"
        rows.append(f"    {seg[:40]:<40} {s['n']:5d}  {p(s['frontier_fraction'])}  "
                    f"{p(s['accepted_accuracy_vs_teacher'])}             {thr}")
    return "\n".join(rows)


def with_novelty(stream: Sequence[StreamItem], novel: Sequence[bool]) -> list[StreamItem]:
    return [replace(s, novel=bool(n)) for s, n in zip(stream, novel)]
