"""`judgeline report`: the analytics queries as printed tables and one self-contained HTML report with its plots.

Contract:
- ``SECTIONS``: the report's sections in order, each a title, what it answers and the queries
  (``schemas/analytics_sql.REPORT_QUERIES``) it shows.
- ``text_tables(results)``: every query's rows as an aligned plain-text table under its section title (floats to 3
  decimals, percentiles as p50/p95/p99, ``(no rows)`` when empty).
- ``headline(results)``: the figures a person on call looks for first, as (name, value, detail): verdicts, routed
  fraction, inline vs frontier disagreement, frontier spend, latency (inline judge p50/p95 and produce -> stored
  p95 of the busiest judge version), dead letters (by stage), and the shadow candidate with the most traces
  (``shadow_headline``: its agreement with the live verdicts, beside both judges' agreement with the frontier and the
  gold labels); shadow verdicts are never counted as verdicts. "n/a" where the window holds no data for it.
- ``shadow_summary(rows)``: the shadow comparison's rows (one per candidate, live version and kind) merged per
  candidate and live version, each rate weighted by the traces it was computed on.
- ``write_html(results, out_dir, window)``: ``<out>/report.html``, self-contained: it opens with the headline, every
  plot is a PNG embedded as a base64 ``data:`` URI (no file beside it is needed), every table is escaped HTML, and
  each section shows the SQL it ran. Plots fit the data they have: a series over time is a line over the periods
  it covers when there are two periods or more, and bars (one per series, the period in the title) when the window
  holds one period (``over_time``); disagreement by confidence bucket per judge version, latency percentiles.
  Returns the path.
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas.analytics_sql import DEAD_LETTERS, REPORT_QUERIES, SHADOW_COMPARISON

SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Verdicts and fail rates", "verdicts per period, app, model and criterion; fail rate (pointwise: share of "
     "'fail'), B-win and tie rates (pairwise)", ("verdict_rates",)),
    ("Routing and frontier spend", "share of inline verdicts routed to the frontier, by reason; frontier calls, "
     "tokens and cost", ("routing", "frontier_spend")),
    ("Disagreement and drift", "inline vs frontier disagreement by confidence bucket and inline judge version, and "
     "over time per version and routing reason (the calibration sample is the unbiased view of accepted verdicts)",
     ("disagreement_by_bucket", "drift")),
    ("Latency", "percentiles in ms: the inline judge per version (Triton call), produce -> stored per version, the "
     "frontier judge", ("latency", "frontier_latency")),
    ("Dead letters", "messages that could not be accepted, kept whole with the reason (table dead_letters), by stage "
     "and source topic", ("dead_letters",)),
    ("Shadow candidates", "each candidate judge version scoring live traffic apart (shadow mode; never a trace's "
     "verdict, never counted above) beside the live verdicts of the same traces: agreement with them, each judge's "
     "agreement with the frontier and the gold labels where present, mean confidence, share below the routing "
     "threshold, latency p50", ("shadow",)),
)
QUERIES = {**REPORT_QUERIES, "dead_letters": DEAD_LETTERS, "shadow": SHADOW_COMPARISON}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (list, tuple)):
        return "/".join(_cell(v) for v in value)
    return str(value)


def _table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = list(rows[0]) if rows else []
    return header, [[_cell(r[c]) for c in header] for r in rows]


def _sum(rows: list[dict[str, Any]], key: str) -> float:
    return float(sum(r[key] or 0 for r in rows if r.get(key) is not None and r[key] == r[key]))


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def headline(results: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str]]:
    verdicts = _sum(results.get("verdict_rates", []), "verdicts")
    routing = results.get("routing", [])
    routed = sum(float(r["routed_fraction"] or 0) * r["verdicts"] for r in routing)
    inline = _sum(routing, "verdicts")
    buckets = results.get("disagreement_by_bucket", [])
    observed, disagreements = _sum(buckets, "observed"), _sum(buckets, "disagreements")
    spend_rows = results.get("frontier_spend", [])
    latency = max(results.get("latency", []), key=lambda r: r["verdicts"], default=None)
    letters = results.get("dead_letters", [])
    by_stage: dict[str, int] = {}
    for r in letters:
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0) + int(r["dead_letters"])

    def ms(values, i):
        return f"{values[i]:.0f} ms" if values and values[i] == values[i] else "n/a"

    out = [
        ("verdicts", f"{verdicts:.0f}", "stored in the window"),
        ("routed to the frontier", _pct(routed, inline), f"{routed:.0f} of {inline:.0f} inline verdicts"),
        ("disagreement", _pct(disagreements, observed),
         f"{disagreements:.0f} of {observed:.0f} traces both judges labelled"),
        ("frontier spend", f"${_sum(spend_rows, 'cost_usd'):.2f}",
         f"{_sum(spend_rows, 'calls'):.0f} calls, {_sum(spend_rows, 'tokens'):.0f} tokens"),
        ("inline judge latency", "n/a" if latency is None else
         f"{ms(latency['judge_ms'], 0)} p50 / {ms(latency['judge_ms'], 1)} p95",
         "" if latency is None else f"produce -> stored p95 {ms(latency['produce_to_stored_ms'], 1)} "
                                    f"(judge version {latency['judge_version']})"),
        ("dead letters", str(sum(by_stage.values())),
         ", ".join(f"{stage} {n}" for stage, n in sorted(by_stage.items())) or "none"),
        shadow_headline(results.get("shadow", [])),
    ]
    return out


def shadow_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shadow comparison per (candidate version, live version), all kinds together: traces shadowed, traces
    both judged, and each rate weighted by the rows it was computed on (None where no row had it)."""
    rates = {"agreement_with_live": "both_judged", "candidate_vs_frontier": "with_frontier",
             "live_vs_frontier": "with_frontier", "candidate_vs_gold": "with_gold", "live_vs_gold": "with_gold",
             "candidate_below_threshold": "both_judged", "live_below_threshold": "both_judged"}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["candidate_version"], r["live_version"]), []).append(r)
    out = []
    for (candidate, live), members in sorted(groups.items()):
        summary: dict[str, Any] = {"candidate_version": candidate, "live_version": live,
                                   "shadowed": sum(int(m["shadowed"]) for m in members)}
        for count in ("both_judged", "with_frontier", "with_gold"):
            summary[count] = sum(int(m[count]) for m in members)
        for rate, base in rates.items():
            weighted = [(m[rate], int(m[base])) for m in members if m[rate] is not None and m[rate] == m[rate]]
            n = sum(w for _, w in weighted)
            summary[rate] = sum(v * w for v, w in weighted) / n if n else None
        out.append(summary)
    return out


def shadow_headline(rows: list[dict[str, Any]]) -> tuple[str, str, str]:
    """('shadow candidates', the busiest candidate's agreement with the live verdicts, its traces and its figures
    vs frontier and gold beside the live judge's)."""
    summaries = shadow_summary(rows)
    if not summaries:
        return ("shadow candidates", "none", "no candidate scored live traffic in the window")
    top = max(summaries, key=lambda r: r["shadowed"])

    def pair(name: str, n_key: str) -> str:
        c, v = top[f"candidate_vs_{name}"], top[f"live_vs_{name}"]
        if c is None or v is None:
            return f"vs {name}: n/a"
        return f"vs {name} {100 * c:.1f}% (live {100 * v:.1f}%, n={top[n_key]})"

    agreement = top["agreement_with_live"]
    value = f"v{top['candidate_version']}: " + ("n/a" if agreement is None else f"{100 * agreement:.1f}% agree")
    detail = (f"{top['shadowed']} traces shadowed beside live v{top['live_version'] or '?'}, not counted as verdicts; "
              f"{pair('frontier', 'with_frontier')}; {pair('gold', 'with_gold')}")
    return ("shadow candidates", value, detail)


def text_tables(results: dict[str, list[dict[str, Any]]]) -> str:
    out = ["== At a glance"] + [f"{name}: {value}" + (f" ({detail})" if detail else "")
                                for name, value, detail in headline(results)] + [""]
    for title, about, names in SECTIONS:
        out.append(f"== {title}: {about}")
        for name in names:
            header, body = _table(results.get(name, []))
            out.append(f"-- {name}")
            if not body:
                out.append("(no rows)")
                continue
            widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
            out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
            out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
        out.append("")
    return "\n".join(out)


def over_time(series: dict[str, list], path: Path, title: str, ylabel: str,
              ylim: tuple[float, float] | None = (0, 1)) -> tuple[Path, str]:
    """A series over time as lines when it covers two periods or more, else as bars; returns (path, kind)."""
    from judge_engine.evaluation import plots

    periods = sorted({x for points in series.values() for x, _ in points})
    if len(periods) >= 2:
        return plots.curves(series, path, title, "period", ylabel, ylim=ylim), "lines"
    when = _cell(periods[0]) if periods else "no data in the window"
    values = {name: points[-1][1] for name, points in series.items() if points}
    return plots.bars(values, path, f"{title} ({when})", ylabel, ylim=ylim), "bars"


def _plots(results: dict[str, list[dict[str, Any]]], tmp: Path) -> dict[str, Path]:
    from judge_engine.evaluation import plots

    def series(rows, key, x, y, keep=lambda r: True):
        out: dict[str, list] = {}
        for r in rows:
            if keep(r) and r[y] is not None:
                out.setdefault(key(r), []).append((r[x], float(r[y])))
        return out

    made: dict[str, Path] = {}
    rates = results.get("verdict_rates", [])
    rate_series = series(rates, lambda r: f"{r['app']}/{r['criterion']} fail", "period", "fail_rate")
    rate_series |= series(rates, lambda r: f"{r['app']}/{r['criterion']} B wins", "period", "b_rate")
    made["verdict_rates"], _ = over_time(rate_series, tmp / "rates.png", "fail rate (pointwise), B-win rate "
                                         "(pairwise)", "rate")
    routing = series(results.get("routing", []), lambda r: f"{r['criterion']} routed", "period", "routed_fraction")
    made["routing"], _ = over_time(routing, tmp / "routing.png", "share routed to the frontier", "routed fraction")
    spend = series(results.get("frontier_spend", []), lambda r: f"{r['criterion']} ({r['judge_name']})", "period",
                   "cost_usd")
    made["frontier_spend"], _ = over_time(spend, tmp / "spend.png", "frontier spend", "USD", ylim=None)
    buckets = series(results.get("disagreement_by_bucket", []), lambda r: f"{r['criterion']} v{r['judge_version']}",
                     "bucket", "disagreement_rate")
    made["disagreement_by_bucket"] = plots.curves(buckets, tmp / "buckets.png", "inline vs frontier disagreement",
                                                  "inline confidence (bucket lower edge)", "disagreement rate")
    latency: dict[str, list] = {}
    for r in results.get("latency", []):
        for name, key in (("judge", "judge_ms"), ("produce->stored", "produce_to_stored_ms")):
            if r[key] and not any(math.isnan(v) for v in r[key]):
                latency[f"v{r['judge_version']} {name}"] = list(zip((50, 95, 99), map(float, r[key])))
    for r in results.get("frontier_latency", []):
        if r["frontier_ms"]:
            latency[f"frontier {r['judge_name']}"] = list(zip((50, 95, 99), map(float, r["frontier_ms"])))
    made["latency"] = plots.curves(latency, tmp / "latency.png", "latency percentiles", "percentile", "ms",
                                   ylim=None)
    return made


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_html(results: dict[str, list[dict[str, Any]]], out_dir: Path, window: str, database: str = "") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>judgeline report</title><style>"
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
             "pre{background:#f6f6f6;padding:8px;font-size:11px}img{max-width:720px;display:block}"
             "#headline{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}.figure{border:1px solid #ccc;"
             "border-radius:6px;padding:8px 14px;min-width:150px}.figure .name{font-size:12px;color:#555}"
             ".figure .value{font-size:24px;font-weight:bold}.figure .detail{font-size:11px;color:#777}</style></head>"
             f"<body><h1>judgeline report</h1><p>{html.escape(window)}; generated "
             f"{datetime.now().astimezone().isoformat(timespec='seconds')}"
             + (f"; database {html.escape(database)}" if database else "") + "</p>"]
    parts.append("<section id='headline'>" + "".join(
        f"<div class='figure'><div class='name'>{html.escape(name)}</div><div class='value'>{html.escape(value)}"
        f"</div><div class='detail'>{html.escape(detail)}</div></div>" for name, value, detail in headline(results))
        + "</section>")
    with tempfile.TemporaryDirectory() as tmp:
        pngs = _plots(results, Path(tmp))
        for title, about, names in SECTIONS:
            slug = names[0]
            parts.append(f"<h2 id='{slug}'>{html.escape(title)}</h2><p>{html.escape(about)}</p>")
            for name in names:
                if name in pngs:
                    parts.append(_img(pngs[name]))
                header, body = _table(results.get(name, []))
                parts.append(f"<h3>{html.escape(name)}</h3>")
                if body:
                    parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                                 + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                           for r in body) + "</table>")
                else:
                    parts.append("<p>(no rows)</p>")
                parts.append(f"<details><summary>SQL</summary><pre>{html.escape(QUERIES[name].strip())}"
                             "</pre></details>")
    parts.append("</body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    return path
