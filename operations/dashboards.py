"""The Grafana dashboards in ``infra/grafana/``, generated: one over the workers' Prometheus metrics, one over
ClickHouse (the report's analytics queries).

Contract:
- ``prometheus_dashboard()`` panels use only the metric names ``streams.metrics`` defines (``metric_names()``),
  through a ``DS_PROMETHEUS`` data source variable.
- ``clickhouse_dashboard()`` has one table panel per query of ``schemas.analytics_sql.REPORT_QUERIES``, the text
  of the query with its parameters mapped to what the Grafana ClickHouse data source
  (``grafana-clickhouse-datasource``) expands: ``GRAFANA_PARAMETERS``. ``{db}`` becomes the ``$database``
  variable, the window the dashboard's time range, the tenant and the frontier judge dashboard variables.
- ``write(directory)`` writes both as ``judgeline-metrics.json`` and ``judgeline-clickhouse.json`` (stable
  formatting: regenerated files differ only when the dashboards changed). ``python -m operations.dashboards``
  rewrites the committed ones; the tests check that they are up to date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.analytics_sql import REPORT_QUERIES, render

GRAFANA_PARAMETERS: dict[str, str] = {
    "{since:DateTime64(3)}": "$__fromTime",
    "{until:DateTime64(3)}": "$__toTime",
    "{tenant:String}": "'${tenant}'",
    "{judge:String}": "'${frontier_judge}'",
    "{step_s:UInt32}": "$__interval_s",
    "{buckets:UInt8}": "10",
}
FILES = {"judgeline-metrics.json": "prometheus_dashboard", "judgeline-clickhouse.json": "clickhouse_dashboard"}
RATE = "[$__rate_interval]"

PROMETHEUS_PANELS: list[tuple[str, str, str, str]] = [
    # (title, expression, legend, unit)
    ("Messages consumed / s", f"sum by (stage) (rate(judgeline_messages_consumed_total{RATE}))", "{{stage}}",
     "ops"),
    ("Verdicts / s by label and source", f"sum by (label, source) (rate(judgeline_verdicts_total{RATE}))",
     "{{source}} {{label}}", "ops"),
    ("Routed fraction", f"sum(rate(judgeline_routed_total{RATE})) / "
                        f"sum(rate(judgeline_verdicts_total{{source=\"inline\"}}{RATE}))", "routed", "percentunit"),
    ("Routed / s by reason", f"sum by (reason) (rate(judgeline_routed_total{RATE}))", "{{reason}}", "ops"),
    ("Dead letters / s by stage", f"sum by (stage) (rate(judgeline_dead_letters_total{RATE}))", "{{stage}}", "ops"),
    ("Disagreements / s", f"sum(rate(judgeline_disagreements_total{RATE}))", "disagreements", "ops"),
    ("Shadow verdicts / s by candidate version", f"sum by (judge_version) (rate(judgeline_shadow_verdicts_total{RATE}))",
     "v{{judge_version}}", "ops"),
    ("Shadow failures / s by reason (live verdicts unaffected)",
     f"sum by (reason) (rate(judgeline_shadow_failures_total{RATE}))", "{{reason}}", "ops"),
    ("Judge / store / broker latency p95",
     f"histogram_quantile(0.95, sum by (le, stage, dependency) (rate(judgeline_call_seconds_bucket{RATE})))",
     "{{stage}} {{dependency}}", "s"),
    ("Batch size p50", f"histogram_quantile(0.5, sum by (le, stage) (rate(judgeline_batch_size_bucket{RATE})))",
     "{{stage}}", "none"),
    ("Seconds held per dependency (per second)",
     f"sum by (stage, dependency) (rate(judgeline_held_seconds_total{RATE}))", "{{stage}} {{dependency}}",
     "percentunit"),
    ("Frontier calls / s by status", f"sum by (status) (rate(judgeline_frontier_calls_total{RATE}))",
     "{{status}}", "ops"),
    ("Frontier API attempts / s (retries included)", f"sum(rate(judgeline_frontier_attempts_total{RATE}))",
     "attempts", "ops"),
    ("Frontier tokens / s", f"sum by (direction) (rate(judgeline_frontier_tokens_total{RATE}))", "{{direction}}",
     "none"),
    ("Frontier spend in range (USD)", "sum(increase(judgeline_frontier_spend_usd_total[$__range]))",
     "spend", "currencyUSD"),
    ("Frontier budget (USD)", "max(judgeline_frontier_budget_usd)", "budget", "currencyUSD"),
    ("Stage events / s (the counts workers log)", f"sum by (stage, event) (rate(judgeline_stage_events_total{RATE}))",
     "{{stage}} {{event}}", "ops"),
    ("Consumer lag (brokers that report it)", "sum by (topic) (judgeline_consumer_lag)", "{{topic}}", "none"),
    ("Served judge versions", "sum by (judge_name, judge_version) (judgeline_served_judge_info)",
     "{{judge_name}} {{judge_version}}", "none"),
    ("Routing policy version", "max(judgeline_routing_policy_version)", "policy version", "none"),
    ("Routing settings (fallback without a policy)",
     "sum by (threshold, calibration_sample_rate, without_policy) (judgeline_routing_settings_info)",
     "threshold {{threshold}} sample {{calibration_sample_rate}} {{without_policy}}", "none"),
]


def _dashboard(uid: str, title: str, panels: list[dict], variables: list[dict]) -> dict[str, Any]:
    return {"uid": uid, "title": title, "tags": ["judgeline"], "timezone": "utc", "schemaVersion": 39,
            "version": 1, "editable": True, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": variables}, "panels": panels, "annotations": {"list": []}}


def _grid(i: int, width: int = 12, height: int = 8) -> dict[str, int]:
    per_row = 24 // width
    return {"x": (i % per_row) * width, "y": (i // per_row) * height, "w": width, "h": height}


def prometheus_dashboard() -> dict[str, Any]:
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = [{"id": i + 1, "type": "timeseries", "title": title, "datasource": source, "gridPos": _grid(i),
               "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
               "targets": [{"refId": "A", "datasource": source, "expr": expr, "legendFormat": legend}]}
              for i, (title, expr, legend, unit) in enumerate(PROMETHEUS_PANELS)]
    variables = [{"name": "DS_PROMETHEUS", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
    return _dashboard("judgeline-metrics", "judgeline: workers (Prometheus)", panels, variables)


def grafana_sql(sql: str) -> str:
    """An analytics query as the Grafana ClickHouse data source runs it (``GRAFANA_PARAMETERS``)."""
    out = render(sql, "${database}")
    for parameter, macro in GRAFANA_PARAMETERS.items():
        out = out.replace(parameter, macro)
    return out.strip()


def clickhouse_dashboard() -> dict[str, Any]:
    source = {"type": "grafana-clickhouse-datasource", "uid": "${DS_CLICKHOUSE}"}
    panels = [{"id": i + 1, "type": "table", "title": name.replace("_", " "), "datasource": source,
               "gridPos": _grid(i, width=24, height=9),
               "targets": [{"refId": "A", "datasource": source, "editorType": "sql", "format": 1,
                            "rawSql": grafana_sql(sql)}]}
              for i, (name, sql) in enumerate(REPORT_QUERIES.items())]
    variables = [
        {"name": "DS_CLICKHOUSE", "type": "datasource", "query": "grafana-clickhouse-datasource",
         "label": "ClickHouse"},
        {"name": "database", "type": "constant", "query": "judgeline", "label": "Database"},
        {"name": "tenant", "type": "textbox", "query": "", "label": "Tenant (empty: all)"},
        {"name": "frontier_judge", "type": "textbox", "query": "gpt-4o", "label": "Frontier judge"},
    ]
    return _dashboard("judgeline-clickhouse", "judgeline: verdicts (ClickHouse)", panels, variables)


def render_file(name: str) -> str:
    return json.dumps(globals()[FILES[name]](), indent=2, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FILES:
        path = directory / name
        path.write_text(render_file(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    from schemas.paths import SOURCE_ROOT

    for written in write(SOURCE_ROOT / "infra" / "grafana"):
        print(written)
