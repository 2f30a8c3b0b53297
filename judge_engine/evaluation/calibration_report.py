"""The calibration report's arithmetic: judges against the gold set, agreement by confidence bucket, and the routing
threshold the accepted error rate implies. Pure: rows in, plain data out (``operations/analytics.py`` fetches the rows
from ClickHouse, ``judgeline calibrate`` writes the JSON and the plots).

Contract:
- Input: one ``JudgedRow`` per inline verdict of one criterion (and kind) and one judge version: its label and
  confidence, its ok frontier verdict's label where one exists (routed traces: low confidence or the calibration
  sample), what that frontier verdict cost, and the human label where the trace is a gold item.
- ``bucket_agreement``: ``n_buckets`` equal-width confidence buckets (the bins of ``metrics.reliability_bins``):
  per bucket the inline traffic (every verdict), how many have a frontier verdict (``observed``: the routed ones and
  the calibration sample) and the inline-frontier disagreement rate among those (NaN when none is observed).
- ``threshold_curve``: for each candidate threshold ``t`` (the lower edge of each bucket, then ``ROUTE_ALL`` above
  every confidence) the verdicts with confidence ``>= t`` are accepted inline and the others routed. The estimated
  disagreement rate among the accepted ones is the traffic-weighted mean of the buckets' observed disagreement rates
  (a stratified estimate: the calibration sample sees high-confidence buckets at a few per cent while every
  low-confidence verdict was routed, so pooling the observed verdicts would over-weight the low buckets). Buckets
  with traffic but no frontier verdict take the rate of the other accepted buckets; their share of the accepted
  traffic is reported as ``unobserved_share``. Each point has the routed (``frontier_fraction``) and accepted
  shares, the frontier fraction including the calibration sample, and the implied frontier calls and cost for the
  window's traffic at the mean cost of one frontier-judged trace. ``disagreement_upper_95`` is the Wilson 95 %
  upper bound of the estimate taking the accepted set's frontier verdicts as the sample size (approximate: the
  strata are weighted), so a threshold resting on a handful of sampled verdicts shows how little it is known.
- ``recommend``: the lowest candidate threshold whose accepted set is non-empty and whose estimated disagreement is
  at most ``accepted_error_rate``; ``None`` when no threshold qualifies (everything would have to go to the
  frontier) or when no verdict has a frontier verdict (nothing to estimate from). The estimate is not assumed to
  fall with the threshold; each threshold is judged on its own.
- ``criterion_report``: all of it for one criterion, plus frontier vs gold (TPR/TNR for pointwise, accuracy and
  kappa for pairwise, through ``metrics.agreement``), inline vs gold (kappa, accuracy), reliability bins against
  gold and against the frontier, the cascade curve against gold (``metrics.cascade_curve``), and ``warnings``: fewer
  than ``MIN_GOLD`` gold items, no frontier verdict on gold items, or the frontier below ``FRONTIER_BAR`` on TPR or
  TNR (pointwise) or accuracy (pairwise, which has no TPR/TNR), and a recommendation resting on fewer than
  ``MIN_OBSERVED`` frontier verdicts above it (the rule stays the point estimate; the warning says how thin it is).
- Undefined values are NaN (JSON: null via ``jsonable``), never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from judge_engine.evaluation import metrics

MIN_GOLD = 100
MIN_OBSERVED = 30
FRONTIER_BAR = 0.9
DEFAULT_N_BUCKETS = 20
ROUTE_ALL = 1.0001  # above every confidence: every verdict routed (as metrics.DEFAULT_THRESHOLDS ends)
NAN = float("nan")


@dataclass(frozen=True)
class JudgedRow:
    inline_label: str
    confidence: float
    frontier_label: str | None = None  # an ok frontier verdict's label; None when none exists
    frontier_cost_usd: float | None = None  # what that trace's frontier verdict cost (all its calls)
    frontier_tokens: int | None = None
    human_label: str | None = None  # the gold label, where the trace is a gold item
    route_reason: str | None = None


@dataclass(frozen=True)
class Bucket:
    lo: float
    hi: float
    traffic: int
    observed: int
    disagreement_rate: float  # among the observed; NaN when none


def bucket_agreement(rows: Sequence[JudgedRow], n_buckets: int = DEFAULT_N_BUCKETS) -> list[Bucket]:
    conf = [r.confidence for r in rows]
    traffic = metrics.reliability_bins(conf, [True] * len(rows), n_buckets)
    agree = [None if r.frontier_label is None else r.inline_label == r.frontier_label for r in rows]
    observed = metrics.reliability_bins(conf, agree, n_buckets)
    return [Bucket(lo=t["lo"], hi=t["hi"], traffic=t["count"], observed=o["count"],
                   disagreement_rate=1.0 - o["accuracy"] if o["count"] else NAN)
            for t, o in zip(traffic, observed)]


def mean_frontier_cost(rows: Sequence[JudgedRow]) -> tuple[float, float, int]:
    """(mean cost in USD, mean tokens, how many) over the traces with a costed frontier verdict."""
    costed = [r for r in rows if r.frontier_cost_usd is not None]
    if not costed:
        return NAN, NAN, 0
    return (sum(r.frontier_cost_usd for r in costed) / len(costed),
            sum(r.frontier_tokens or 0 for r in costed) / len(costed), len(costed))


def wilson_upper(rate: float, n: int, z: float = 1.96) -> float:
    """Upper end of the Wilson score interval of a proportion ``rate`` seen on ``n`` items; NaN when n is 0."""
    if not n or math.isnan(rate):
        return NAN
    centre = rate + z * z / (2 * n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def threshold_curve(buckets: Sequence[Bucket], *, calibration_sample_rate: float = 0.0,
                    cost_per_trace_usd: float = NAN, tokens_per_trace: float = NAN) -> list[dict[str, Any]]:
    total = sum(b.traffic for b in buckets)
    points = []
    for t in [b.lo for b in buckets] + [ROUTE_ALL]:
        accepted = [b for b in buckets if b.lo >= t and b.traffic]
        n_accepted = sum(b.traffic for b in accepted)
        seen = [b for b in accepted if b.observed]
        seen_traffic = sum(b.traffic for b in seen)
        rate = sum(b.traffic * b.disagreement_rate for b in seen) / seen_traffic if seen_traffic else NAN
        routed = (total - n_accepted) / total if total else NAN
        with_sample = routed + calibration_sample_rate * (1 - routed) if total else NAN
        calls = with_sample * total if total else 0.0
        points.append({
            "threshold": t,
            "accepted": n_accepted,
            "frontier_fraction": routed,
            "frontier_fraction_with_sample": with_sample,
            "estimated_disagreement": rate,
            "disagreement_upper_95": wilson_upper(rate, sum(b.observed for b in accepted)),
            "observed_in_accepted": sum(b.observed for b in accepted),
            "unobserved_share": (n_accepted - seen_traffic) / n_accepted if n_accepted else NAN,
            "frontier_traces": calls,
            "frontier_cost_usd": calls * cost_per_trace_usd,
            "frontier_tokens": calls * tokens_per_trace,
            # agreement of the cascade's verdicts with the frontier: routed ones agree by definition
            "estimated_agreement_with_frontier": 1 - rate * (n_accepted / total) if total and seen_traffic
            else (1.0 if total and not n_accepted else NAN),
        })
    return points


def recommend(points: Sequence[dict[str, Any]], accepted_error_rate: float) -> dict[str, Any] | None:
    for p in points:  # lowest threshold first
        rate = p["estimated_disagreement"]
        if p["accepted"] and not math.isnan(rate) and rate <= accepted_error_rate:
            return dict(p)
    return None


def _agreement(pred: list, truth: list, kind: str) -> dict[str, Any]:
    a = metrics.agreement(pred, truth, kind)
    return {"n": a.n, "accuracy": a.accuracy, "kappa": a.kappa, "tpr": a.tpr, "tnr": a.tnr}


def criterion_report(rows: Sequence[JudgedRow], *, kind: str, accepted_error_rate: float,
                     calibration_sample_rate: float = 0.0, current_threshold: float | None = None,
                     n_buckets: int = DEFAULT_N_BUCKETS) -> dict[str, Any]:
    buckets = bucket_agreement(rows, n_buckets)
    cost, tokens, costed = mean_frontier_cost(rows)
    points = threshold_curve(buckets, calibration_sample_rate=calibration_sample_rate, cost_per_trace_usd=cost,
                             tokens_per_trace=tokens)
    gold = [r for r in rows if r.human_label]
    frontier_gold = [r for r in gold if r.frontier_label is not None]
    frontier_vs_gold = _agreement([r.frontier_label for r in frontier_gold], [r.human_label for r in frontier_gold],
                                  kind)
    inline_vs_gold = _agreement([r.inline_label for r in gold], [r.human_label for r in gold], kind)
    observed = [r for r in rows if r.frontier_label is not None]
    warnings = []
    if len(gold) < MIN_GOLD:
        warnings.append(f"only {len(gold)} gold items were judged for this criterion (fewer than {MIN_GOLD}): the "
                        "gold figures are too noisy to trust; import and stream more gold items")
    if not frontier_gold:
        warnings.append("no gold item has a frontier verdict: the frontier judge cannot be checked against the gold "
                        "set (stream gold items with a calibration sample, or lower the threshold)")
    elif kind == "pointwise":
        for name in ("tpr", "tnr"):
            value = frontier_vs_gold[name]
            if value is None or math.isnan(value) or value < FRONTIER_BAR:
                warnings.append(f"the frontier judge's {name.upper()} against the gold set is {_fmt(value)} (n="
                                f"{frontier_vs_gold['n']}), below the {FRONTIER_BAR} bar: its verdicts are not a "
                                "trustworthy reference for this criterion")
    elif math.isnan(frontier_vs_gold["accuracy"]) or frontier_vs_gold["accuracy"] < FRONTIER_BAR:
        warnings.append(f"the frontier judge's accuracy against the gold set is {_fmt(frontier_vs_gold['accuracy'])} "
                        f"(n={frontier_vs_gold['n']}; pairwise has no TPR/TNR, accuracy stands in), below the "
                        f"{FRONTIER_BAR} bar: its verdicts are not a trustworthy reference for this criterion")
    rec = recommend(points, accepted_error_rate)
    if not observed:
        warnings.append("no inline verdict has a frontier verdict: no threshold can be recommended")
    elif rec is None:
        warnings.append(f"no threshold keeps the estimated inline-frontier disagreement at or under "
                        f"{accepted_error_rate}: every verdict would have to go to the frontier")
    elif rec["observed_in_accepted"] < MIN_OBSERVED:
        warnings.append(f"the recommended threshold {rec['threshold']:.2f} rests on only {rec['observed_in_accepted']} "
                        f"frontier verdicts above it (95 % upper bound of the disagreement "
                        f"{_fmt(rec['disagreement_upper_95'])}): too few to trust; raise "
                        "routing.calibration_sample_rate to measure the confident verdicts")
    return {
        "kind": kind,
        "verdicts": len(rows),
        "gold_items": len(gold),
        "frontier_verdicts": len(observed),
        "frontier_verdicts_by_reason": _count(r.route_reason or "none" for r in observed),
        "frontier_vs_gold": frontier_vs_gold,
        "inline_vs_gold": inline_vs_gold,
        "inline_vs_frontier": _agreement([r.inline_label for r in observed], [r.frontier_label for r in observed],
                                         kind),
        "agreement_by_bucket": [
            {"lo": b.lo, "hi": b.hi, "traffic": b.traffic, "observed": b.observed,
             "agreement": 1 - b.disagreement_rate} for b in buckets if b.traffic],
        "frontier_cost_per_trace_usd": cost,
        "frontier_tokens_per_trace": tokens,
        "frontier_costed_traces": costed,
        "threshold_curve": points,
        "accepted_error_rate": accepted_error_rate,
        "current_threshold": current_threshold,
        "current": _at(points, current_threshold),
        "recommendation": rec,
        "reliability_vs_gold": metrics.reliability_bins(
            [r.confidence for r in gold], [r.inline_label == r.human_label for r in gold]),
        "reliability_vs_frontier": metrics.reliability_bins(
            [r.confidence for r in observed], [r.inline_label == r.frontier_label for r in observed]),
        "cascade_vs_gold": metrics.cascade_curve([r.inline_label for r in gold], [r.confidence for r in gold],
                                                 [r.frontier_label for r in gold], [r.human_label for r in gold]),
        "warnings": warnings,
    }


def _at(points: Sequence[dict[str, Any]], threshold: float | None) -> dict[str, Any] | None:
    """The curve's point at the highest candidate threshold not above ``threshold``."""
    if threshold is None:
        return None
    below = [p for p in points if p["threshold"] <= threshold + 1e-9]
    return dict(below[-1]) if below else None


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def jsonable(value: Any) -> Any:
    """NaN (and infinities) as None, recursively: the report is strict JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
