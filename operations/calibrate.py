"""`judgeline calibrate`: the calibration report from ClickHouse, per criterion, with a routing threshold
recommendation, written as ``calibration.json`` and two PNGs.

Contract:
- ``calibrate(settings, analytics, out_dir, judge_version=None)`` reads the inline verdicts of the window with their
  frontier verdict (the configured frontier judge) and gold label (``schemas/analytics_sql.CALIBRATION_ROWS``),
  keeps per (criterion, kind) one inline judge version (the one given, else the newest in the window: the one a
  threshold is for), and computes each criterion's report with ``judge_engine.evaluation.calibration_report`` against
  ``routing.accepted_error_rate``, ``routing.calibration_sample_rate`` and the current ``routing.threshold``.
- Writes ``<out>/calibration.json`` (strict JSON, NaN as null), ``<out>/calibration.reliability.png`` (inline
  confidence vs accuracy against gold and against the frontier, per criterion) and
  ``<out>/calibration.cost_accuracy.png`` (per criterion: the cascade's estimated agreement with the frontier and
  its accuracy against gold by the fraction routed to the frontier; the recommendation starred). Returns the report.
- Every warning of every criterion is also in the report's top-level ``warnings`` (prefixed with the criterion);
  the CLI prints them to stderr.
- ``format_summary(report)`` is the printed text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from judge_engine.evaluation import calibration_report as cr
from operations.analytics import Analytics
from schemas.analytics_sql import CALIBRATION_ROWS, JUDGE_VERSIONS
from schemas.settings import Settings

NOTE = ("Only routed verdicts have a frontier verdict: every low-confidence one (below the threshold in force when "
        "it was judged) and the calibration sample (a deterministic routing.calibration_sample_rate of the rest). "
        "Agreement by bucket and the threshold estimate use exactly those: see each bucket's 'observed' (verdicts "
        "with a frontier verdict) beside its 'traffic' (all verdicts). The disagreement above a threshold is the "
        "traffic-weighted mean of the buckets' observed rates, so the sparsely sampled confident buckets are not "
        "outweighed by the fully routed low ones; few observed verdicts in a bucket mean a noisy estimate.")


def _rows(analytics: Analytics, judge_version: str | None) -> tuple[dict[tuple[str, str], list[cr.JudgedRow]],
                                                                    dict[tuple[str, str], dict[str, Any]]]:
    versions: dict[tuple[str, str], dict[str, Any]] = {}
    for v in analytics.query(JUDGE_VERSIONS):  # newest first per (criterion, kind)
        key = (v["criterion"], v["kind"])
        info = versions.setdefault(key, {"chosen": None, "all": {}})
        info["all"][v["judge_version"]] = v["verdicts"]
        if info["chosen"] is None and (judge_version is None or v["judge_version"] == judge_version):
            info["chosen"] = v["judge_version"]
    grouped: dict[tuple[str, str], list[cr.JudgedRow]] = {}
    for r in analytics.query(CALIBRATION_ROWS):
        key = (r["criterion"], r["kind"])
        if r["judge_version"] != versions.get(key, {}).get("chosen"):
            continue
        has = bool(r["has_frontier"])
        grouped.setdefault(key, []).append(cr.JudgedRow(
            inline_label=r["inline_label"], confidence=float(r["confidence"]),
            frontier_label=r["frontier_label"] if has and r["frontier_status"] == "ok" else None,
            frontier_cost_usd=float(r["frontier_cost_usd"]) if has else None,
            frontier_tokens=int(r["frontier_tokens"]) if has else None,
            human_label=r["human_label"] or None, route_reason=r["route_reason"] or None))
    return grouped, versions


def calibrate(settings: Settings, analytics: Analytics, out_dir: Path, judge_version: str | None = None
              ) -> dict[str, Any]:
    from judge_engine.evaluation import plots

    routing = settings.routing
    grouped, versions = _rows(analytics, judge_version)
    criteria: dict[str, Any] = {}
    warnings: list[str] = []
    for (criterion, kind), rows in sorted(grouped.items()):
        name = criterion if sum(c == criterion for c, _ in grouped) == 1 else f"{criterion} ({kind})"
        report = cr.criterion_report(rows, kind=kind, accepted_error_rate=routing.accepted_error_rate,
                                     calibration_sample_rate=routing.calibration_sample_rate,
                                     current_threshold=routing.threshold)
        report["judge_version"] = versions[(criterion, kind)]["chosen"]
        report["judge_versions_in_window"] = versions[(criterion, kind)]["all"]
        criteria[name] = report
        warnings += [f"{name}: {w}" for w in report["warnings"]]
    if not criteria:
        warnings.append("no inline verdict in the window" + (f" from judge version {judge_version}"
                                                             if judge_version else "") + ": nothing to calibrate")
    out_dir.mkdir(parents=True, exist_ok=True)
    reliability = plots.reliability_diagram(
        {f"{name} vs {ref}": r[f"reliability_vs_{ref}"] for name, r in criteria.items() for ref in ("gold", "frontier")
         if any(b["count"] for b in r[f"reliability_vs_{ref}"])},
        out_dir / "calibration.reliability.png", "inline judge: confidence vs accuracy")
    series: dict[str, list[tuple[float, float]]] = {}
    marks: dict[str, tuple[float, float]] = {}
    for name, r in criteria.items():
        series[f"{name}: agreement with frontier (estimated)"] = [
            (p["frontier_fraction"], p["estimated_agreement_with_frontier"]) for p in r["threshold_curve"]]
        if r["gold_items"]:
            series[f"{name}: accuracy vs gold (no frontier verdict: the inline label stands)"] = [
                (p["frontier_fraction"], p["accuracy_vs_human"]) for p in r["cascade_vs_gold"]]
        rec = r["recommendation"]
        if rec:
            marks[f"{name}: recommended {rec['threshold']:.2f}"] = (rec["frontier_fraction"],
                                                                   rec["estimated_agreement_with_frontier"])
    cost_accuracy = plots.curves(series, out_dir / "calibration.cost_accuracy.png",
                                 "cascade: quality vs share sent to the frontier",
                                 "fraction of verdicts routed to the frontier (below the threshold)",
                                 "agreement / accuracy", marks=marks)
    report = {
        "window": analytics.window.describe(),
        "frontier_judge": analytics.params["judge"],
        "id_prefix": analytics.params["id_prefix"],
        "accepted_error_rate": routing.accepted_error_rate,
        "current_threshold": routing.threshold,
        "calibration_sample_rate": routing.calibration_sample_rate,
        "criteria": criteria,
        "warnings": warnings,
        "note": NOTE,
        "plots": {"reliability": str(reliability), "cost_accuracy": str(cost_accuracy)},
    }
    (out_dir / "calibration.json").write_text(json.dumps(cr.jsonable(report), indent=2, default=str))
    return report


def _f(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def format_summary(report: dict[str, Any]) -> str:
    lines = [f"calibration over {report['window']} (frontier judge {report['frontier_judge']}; accepted error rate "
             f"{report['accepted_error_rate']}, threshold now {report['current_threshold']})"]
    for name, r in report["criteria"].items():
        fg, ig = r["frontier_vs_gold"], r["inline_vs_gold"]
        frontier = (f"TPR {_f(fg['tpr'])} TNR {_f(fg['tnr'])}" if r["kind"] == "pointwise"
                    else f"accuracy {_f(fg['accuracy'])} kappa {_f(fg['kappa'])}")
        lines += [
            f"{name} ({r['kind']}, judge version {r['judge_version']}): {r['verdicts']} verdicts, "
            f"{r['frontier_verdicts']} with a frontier verdict {r['frontier_verdicts_by_reason']}, "
            f"{r['gold_items']} gold items",
            f"  frontier vs gold   {frontier} (n={fg['n']})",
            f"  inline vs gold     kappa {_f(ig['kappa'])}, accuracy {_f(ig['accuracy'])} (n={ig['n']})",
            "  inline vs frontier by confidence bucket (agreement, observed/traffic): " + ", ".join(
                f"[{b['lo']:.2f},{b['hi']:.2f}) {_pct(b['agreement'])} {b['observed']}/{b['traffic']}"
                for b in r["agreement_by_bucket"]),
        ]
        cur, rec = r["current"], r["recommendation"]
        if cur:
            lines.append(f"  at the current threshold {cur['threshold']:.2f}: {_pct(cur['frontier_fraction'])} routed, "
                         f"estimated disagreement above it {_pct(cur['estimated_disagreement'])}")
        if rec:
            lines.append(
                f"  RECOMMENDED threshold {rec['threshold']:.2f}: estimated disagreement above it "
                f"{_pct(rec['estimated_disagreement'])} (95 % upper bound {_pct(rec['disagreement_upper_95'])}; from "
                f"{rec['observed_in_accepted']} frontier verdicts; "
                f"{_pct(rec['unobserved_share'])} of the accepted traffic in buckets without one), "
                f"{_pct(rec['frontier_fraction'])} routed ({_pct(rec['frontier_fraction_with_sample'])} with the "
                f"calibration sample), frontier cost ${_f(rec['frontier_cost_usd'], '.4f')} for these "
                f"{r['verdicts']} verdicts (${_f(r['frontier_cost_per_trace_usd'], '.5f')} per frontier-judged trace)")
        else:
            lines.append("  no threshold recommended (see the warnings)")
    return "\n".join(lines)
