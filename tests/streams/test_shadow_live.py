"""Shadow mode on the real services: the tiny judge is the live version of a Triton model, a candidate (the tiny judge
with its pairwise head forced to say A) is shadowed with `judgeline shadow start`, and a real `judgeline worker inline`
with JUDGELINE_SHADOW__VERSION=latest judges 40 traces. Every trace gets a shadow row beside its verdict, the verdicts
are exactly the live version's, `judgeline report` shows the comparison; once the candidate is unloaded
(`judgeline shadow stop`) the verdicts go on intact and the worker counts the failures; `judgeline shadow promote`
goes through the deployment gate."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests_support import always_a_judge, run_cli

from judge_engine.clients.triton_client import TritonJudge
from judge_engine.training.export import export
from operations.produce import produce, traces_from_gold
from stack import process, triton
from stack.topics import ensure_topics
from stack.workers import start_worker, wait_until, wait_worker_ready

pytestmark = pytest.mark.integration


def _metric(settings, worker, name: str, **labels) -> float:
    url = f"http://{settings.stack.bind_host}:{worker.ports['web']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _live_labels(settings, traces) -> dict[str, str]:
    async def judge():
        async with TritonJudge(settings.triton) as j:
            return await j.judge(traces)

    return {t.trace_id: r.label for t, r in zip(traces, asyncio.run(judge()), strict=True)}


def test_a_shadowed_candidate_scores_every_trace_apart_and_report_compares(stack, store, tiny_judge, sample_gold,
                                                                           tmp_path, monkeypatch):
    client, base = store
    db = base.clickhouse.database
    run = uuid.uuid4().hex[:8]
    model = f"judge_sh_{run}"  # a model of its own on the session's Triton: the other tests' judge is untouched
    repo = base.stack.model_repository
    topics = {name: f"judgeline.{name}.{run}" for name in
              ("traces", "frontier_requests", "verdicts", "frontier_verdicts", "dead_letters")}
    settings = base.model_copy(update={
        "triton": base.triton.model_copy(update={"model_name": model}),
        "shadow": base.shadow.model_copy(update={"version": "latest"}),
        "kafka": base.kafka.model_copy(update={
            "topics": base.kafka.topics.model_copy(update={**topics, "partitions": 2}),
            "consumer_group": f"inline-{run}"}),
        "routing": base.routing.model_copy(update={"without_policy": "threshold"}),
        "stream": base.stream.model_copy(update={"batch_size": 16, "batch_within_s": 0.1}),
    })
    cli = lambda *a: run_cli(monkeypatch, settings, repo, *a, JUDGELINE_TRITON__MODEL_NAME=model)  # noqa: E731

    export(tiny_judge.model_dir, repo, model)  # the live version 1
    assert triton.load_model(settings, model) == "1"
    candidate = always_a_judge(tiny_judge, tmp_path)
    done = cli("shadow", "start", "--model", candidate)
    assert done.exit_code == 0, done.output
    assert f"Triton serves {model}_shadow version 2" in done.output and "REFUSED" in done.output  # recorded only
    assert triton.load_model(settings, model) == "1"  # reloading the live model does not pick the candidate up

    ensure_topics(settings)
    worker = start_worker(settings, "inline", name=f"inline-shadow-{run}")
    try:
        wait_worker_ready(settings, worker, timeout_s=90)
        all_traces = [t for _, t in traces_from_gold(sample_gold)]
        traces = all_traces[:20] + all_traces[-20:]  # pairwise first in the sample, pointwise last
        assert produce(settings, [(t.trace_id.encode(), t.to_bytes()) for t in traces]).failed == 0

        def count(sql: str) -> int:
            return client.query(sql).result_rows[0][0]

        ids = {t.trace_id for t in traces}
        assert wait_until(lambda: count(f"SELECT count() FROM {db}.shadow_verdicts FINAL") >= len(ids)
                          and count(f"SELECT count() FROM {db}.verdicts FINAL") >= len(ids), 90)
        verdicts = {r[0]: r[1:] for r in client.query(
            f"SELECT trace_id, label, judge_version FROM {db}.verdicts FINAL").result_rows}
        shadow = {r[0]: r[1:] for r in client.query(
            f"SELECT trace_id, label, judge_version, live_label, live_judge_version, kind "
            f"FROM {db}.shadow_verdicts FINAL").result_rows}
        assert set(verdicts) == set(shadow) == ids  # a shadow row for every trace, beside its one verdict
        # the verdicts are exactly the live version's (asked directly), never the candidate's
        assert {v for _, v in verdicts.values()} == {"1"}
        assert {t: label for t, (label, _) in verdicts.items()} == _live_labels(settings, traces)
        assert all((version, live_label, live_version) == ("2", verdicts[t][0], "1")
                   for t, (_, version, live_label, live_version, _) in shadow.items())
        pairwise = [t for t, row in shadow.items() if row[4] == "pairwise"]
        assert {shadow[t][0] for t in pairwise} == {"A"}  # the candidate answered
        assert any(verdicts[t][0] != "A" for t in pairwise), "the live judge must differ somewhere to tell them apart"
        assert _metric(settings, worker, "judgeline_shadow_verdicts_total", judge_version="2") == len(ids)

        done = cli("report")
        assert done.exit_code == 0, done.output
        figures = next(line for line in done.output.splitlines() if line.startswith("shadow candidates: "))
        agree = sum(shadow[t][0] == verdicts[t][0] for t in ids) / len(ids)
        assert figures.startswith(f"shadow candidates: v2: {100 * agree:.1f}% agree (40 traces shadowed beside live "
                                  "v1, not counted as verdicts"), figures
        assert "verdicts: 40 " in done.output and "== Shadow candidates" in done.output

        # the candidate unloaded: the worker goes on, every live verdict intact, the failures counted
        done = cli("shadow", "stop")
        assert done.exit_code == 0 and "retired version(s) [2]" in done.output, done.output
        more = all_traces[20:30]
        assert produce(settings, [(t.trace_id.encode(), t.to_bytes()) for t in more]).failed == 0
        assert wait_until(lambda: count(f"SELECT count() FROM {db}.verdicts FINAL") >= len(ids) + len(more), 60)
        assert wait_until(lambda: _metric(settings, worker, "judgeline_shadow_failures_total") >= len(more), 10)
        assert _metric(settings, worker, "judgeline_shadow_failures_total", reason="not_loaded") == len(more)
        assert count(f"SELECT count() FROM {db}.shadow_verdicts FINAL") == len(ids)
        assert count(f"SELECT count() FROM {db}.verdicts FINAL WHERE judge_version = '1'") == len(ids) + len(more)
        assert count(f"SELECT count() FROM {db}.dead_letters FINAL") == 0
    finally:
        process.stop(worker)

    # promotion goes through the gate (no gold labels stored: refused unless --force) and serves the candidate
    done = cli("shadow", "start", "--model", candidate)
    assert done.exit_code == 0 and f"{model}_shadow version 3" in done.output, done.output  # never 2 again
    done = cli("shadow", "promote")
    assert done.exit_code == 1 and "refused by the deployment gate" in done.output
    done = cli("shadow", "promote", "--force")
    assert done.exit_code == 0 and f"{model} version 3 is live" in done.output, done.output
    assert triton.load_model(settings, model) == "3" and not (repo / f"{model}_shadow" / "3").exists()
    decisions = client.query(f"SELECT version, action, decision FROM {db}.judge_versions_latest "
                             "ORDER BY decided_at").result_rows
    assert decisions == [("2", "shadow", "refused"), ("3", "shadow", "refused"), ("3", "promote", "refused"),
                         ("3", "promote", "forced")]
