"""`judgeline report`: the analytics queries as printed tables and one self-contained HTML report with its plots.

Contract:
- ``SECTIONS``: the report's sections in order, each a title, what it answers and the queries
  (``schemas/analytics_sql.REPORT_QUERIES``) it shows.
- ``text_tables(results)``: every query's rows as an aligned plain-text table under its section title (floats to 3
  decimals, percentiles as p50/p95/p99, ``(no rows)`` when empty).
- ``write_html(results, out_dir, window)``: ``<out>/report.html``, self-contained: every plot is a PNG embedded as a
  base64 ``data:`` URI (no file beside it is needed), every table is escaped HTML, and each section shows the SQL
  it ran. Plots: fail / B-win rate over time, routed fraction and frontier spend over time, disagreement by
  confidence bucket per judge version, latency percentiles. Returns the path.
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas.analytics_sql import REPORT_QUERIES

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
)


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


def text_tables(results: dict[str, list[dict[str, Any]]]) -> str:
    out = []
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
    made["verdict_rates"] = plots.curves(rate_series, tmp / "rates.png", "fail rate (pointwise), B-win rate "
                                         "(pairwise)", "period", "rate")
    routing = series(results.get("routing", []), lambda r: f"{r['criterion']} routed", "period", "routed_fraction")
    made["routing"] = plots.curves(routing, tmp / "routing.png", "share routed to the frontier", "period",
                                   "routed fraction")
    spend = series(results.get("frontier_spend", []), lambda r: f"{r['criterion']} ({r['judge_name']})", "period",
                   "cost_usd")
    made["frontier_spend"] = plots.curves(spend, tmp / "spend.png", "frontier spend", "period", "USD", ylim=None)
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
             "pre{background:#f6f6f6;padding:8px;font-size:11px}img{max-width:720px;display:block}</style></head>"
             f"<body><h1>judgeline report</h1><p>{html.escape(window)}; generated "
             f"{datetime.now().astimezone().isoformat(timespec='seconds')}"
             + (f"; database {html.escape(database)}" if database else "") + "</p>"]
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
                parts.append(f"<details><summary>SQL</summary><pre>{html.escape(REPORT_QUERIES[name].strip())}"
                             "</pre></details>")
    parts.append("</body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    return path
