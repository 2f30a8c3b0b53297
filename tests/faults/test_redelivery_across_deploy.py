"""Fault: a batch judged by one judge version is redelivered after a deploy of the next (issue 12, point 3).

Real processes on the private fault stack: the broker, the store server, Triton serving a model of the test's own
(the tiny judge exported as version 1) and ``judgeline worker inline`` with the real judge. The worker commits
offsets only every 600 s here, so when it is SIGKILLed after storing every verdict, nothing it consumed is
committed. Version 2 is then exported and loaded into the running Triton (what ``judgeline deploy`` does), and a new
worker gets the whole stream again and judges it with version 2. Keyed by (trace, judge version), as before
migration 7, the verdicts table kept two verdicts for every trace; keyed by the trace, each trace has exactly one
after FINAL, the newest: version 2's.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fault_support import kill

from stack.workers import wait_until

pytestmark = pytest.mark.integration


def test_a_batch_redelivered_across_a_deploy_leaves_one_verdict_per_trace(fault_run, fault_triton, tiny_judge,
                                                                            sample_traces):
    import tritonclient.http as httpclient

    from judge_engine.training.export import export
    from stack import triton

    model = f"judge_rekey_{uuid.uuid4().hex[:8]}"  # a model of its own: the suite's `judge` stays at its version
    run = fault_run(kafka={"commit_interval_s": 600.0}, triton={"model_name": model})
    repository = Path(run.settings.stack.model_repository)
    try:
        export(tiny_judge.model_dir, repository, model, version=1)
        assert triton.load_model(run.settings, model) == "1"
        traces = sample_traces["pairwise"][:12] + sample_traces["pointwise"][:12]
        worker = run.worker("inline")
        bad = run.send(traces, malformed=2)
        run.wait_accounted(len(traces) + len(bad), timeout_s=120)
        before = {t: (v, at) for t, v, at in run.rows("SELECT trace_id, judge_version, judged_at "
                                                      "FROM {db}.verdicts FINAL")}
        assert {v for v, _ in before.values()} == {"1"} and len(before) == len(traces)
        kill(worker)  # nothing committed: the next worker of the group gets every message again

        export(tiny_judge.model_dir, repository, model, version=2)
        assert triton.load_model(run.settings, model) == "2"  # the deploy
        run.worker("inline")

        def rejudged() -> int:
            return run.count("SELECT count() FROM {db}.verdicts FINAL WHERE judge_version = '2'")

        assert wait_until(lambda: rejudged() == len(traces), 120), \
            f"only {rejudged()} of {len(traces)} traces were judged again by version 2 after the redelivery"
        run.assert_each_once(traces, bad)  # exactly one verdict per trace after FINAL, one dead letter per bad one
        after = {t: (v, at) for t, v, at in run.rows("SELECT trace_id, judge_version, judged_at "
                                                     "FROM {db}.verdicts FINAL")}
        assert all(after[t][0] == "2" and after[t][1] > before[t][1] for t in before), \
            "a trace's verdict is not its newest judgement"
        stored = run.count("SELECT count() FROM {db}.verdicts FINAL")
        per_version = run.rows("SELECT judge_version, count() FROM {db}.verdicts_latest GROUP BY judge_version")
        assert stored == len(traces) and per_version == [("2", len(traces))]
    finally:
        client = httpclient.InferenceServerClient(run.settings.triton.http_url)
        try:
            client.unload_model(model)  # the fault stack's Triton keeps only what other tests load
        finally:
            client.close()
