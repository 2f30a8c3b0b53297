"""The observability files of infra/: the Grafana dashboards (valid JSON, up to date with their generator, every
metric they use exists, every SQL runs on the real store), Prometheus's scrape config in the compose file and the
prometheus.io annotations of the k8s workers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
import yaml
from tests_support import REPO_ROOT

from operations import dashboards
from streams.metrics import metric_names

GRAFANA = REPO_ROOT / "infra" / "grafana"
WORKER_WEB_PORT = 6066


@pytest.mark.parametrize("name", sorted(dashboards.FILES))
def test_the_committed_dashboards_are_valid_json_and_up_to_date(name):
    text = (GRAFANA / name).read_text()
    board = json.loads(text)
    assert board["panels"] and len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert text == dashboards.render_file(name), f"infra/grafana/{name} is stale: python -m operations.dashboards"


def test_every_metric_the_prometheus_dashboard_uses_exists():
    board = json.loads((GRAFANA / "judgeline-metrics.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bjudgeline_\w+", e)}
    assert used and used <= set(metric_names()), sorted(used - set(metric_names()))
    # every family the workers export is on the dashboard (a metric nobody sees is a metric nobody watches)
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in metric_names()}
    shown = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in used}
    assert families <= shown, sorted(families - shown)


def _as_clickhouse_runs_it(sql: str, database: str) -> str:
    """The Grafana ClickHouse data source's expansion of its macros and of the dashboard variables."""
    since, until = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 12, 31, tzinfo=timezone.utc)
    return (sql.replace("$__fromTime", f"toDateTime({int(since.timestamp())})")
               .replace("$__toTime", f"toDateTime({int(until.timestamp())})")
               .replace("$__interval_s", "3600")
               .replace("${database}", database).replace("${tenant}", "").replace("${frontier_judge}", "gpt-4"))


@pytest.mark.integration
def test_every_sql_of_the_clickhouse_dashboard_runs_on_the_real_store(store):

    client, settings = store
    board = json.loads((GRAFANA / "judgeline-clickhouse.json").read_text())
    sqls = [t["rawSql"] for p in board["panels"] for t in p["targets"]]
    assert len(sqls) == len(dashboards.REPORT_QUERIES)
    for sql in sqls:
        expanded = _as_clickhouse_runs_it(sql, settings.clickhouse.database)
        assert "{" not in expanded.replace("{{", ""), expanded  # no parameter left unbound
        client.query(expanded)  # raises on a syntax error, an unknown column or table


def test_compose_scrapes_every_worker_on_its_web_port():
    doc = yaml.safe_load((REPO_ROOT / "infra" / "compose" / "docker-compose.yml").read_text())
    workers = [name for name, s in doc["services"].items() if (s.get("command") or [])[1:2] == ["worker"]]
    assert workers
    config = yaml.safe_load(doc["configs"]["prometheus-config"]["content"])
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{w}:{WORKER_WEB_PORT}" for w in workers}
    grafana = doc["services"]["grafana"]
    mounted = [v.split(":")[0] for v in grafana["volumes"]]
    assert "../grafana" in mounted and (REPO_ROOT / "infra" / "grafana").is_dir()


def test_k8s_workers_carry_the_prometheus_annotations():
    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "infra" / "k8s" / "workers.yaml").read_text()) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"
                   and d["spec"]["template"]["spec"]["containers"][0]["command"][1:2] == ["worker"]]
    assert {d["metadata"]["name"] for d in deployments} == {"judgeline-inline", "judgeline-frontier"}
    for d in deployments:
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(WORKER_WEB_PORT)
        assert annotations["prometheus.io/path"] == "/metrics"
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert WORKER_WEB_PORT in [p["containerPort"] for p in container["ports"]]
