"""Fault: the frontier worker is killed with SIGKILL while a batch of its requests is at the frontier, then restarted.

Real processes on the private fault stack: the broker, the store server, ``judgeline worker inline`` (constant stub
judge, threshold 1.0: every trace is routed), the replay frontier answering each call after 1.5 s, and
``judgeline worker frontier``. Both workers commit offsets only every 60 s, so nothing the killed frontier worker
consumed is committed: the restarted one gets every request again.

The kill is proved to land inside a batch by the frontier's own counts (``/stats`` ``by_trace``): the traces whose
call was made but whose frontier verdict was not stored at the kill are asked again by the restarted worker, and
those whose ``ok`` verdict was stored are not (the stored verdict is reused). Then every routed trace has exactly one
frontier verdict (all ``ok``), every disagreement (frontier label != inline label) is stored exactly once, and every
trace keeps exactly one inline verdict, all after FINAL.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from fault_support import kill

from doubles.frontier_replay import Faults
from stack.workers import wait_until

pytestmark = pytest.mark.integration


def _stats(settings) -> dict:
    with urllib.request.urlopen(settings.frontier.base_url.removesuffix("/v1") + "/stats", timeout=5) as r:
        return json.loads(r.read())


def test_frontier_worker_sigkilled_mid_batch_then_restarted_gives_one_frontier_verdict_each(
        fault_run, sample_traces, sample_gold):
    run = fault_run(kafka={"commit_interval_s": 60.0},
                    routing={"threshold": 1.0, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    traces = sample_traces["pointwise"][:16] + sample_traces["pairwise"][:16]
    ids = sorted(t.trace_id for t in traces)
    settings = run.replay(sample_gold, Faults(latency_ms=1500))
    workers = [run.worker("inline", stub_ms=5, ready=False), run.worker("frontier", settings=settings, ready=False)]
    for w in workers:
        run.wait_ready(w, settings)

    def stored() -> set[str]:
        return {t for (t,) in run.rows("SELECT trace_id FROM {db}.frontier_verdicts FINAL")}

    run.send(traces)
    # a batch is stored and the next one is at the frontier (each call takes 1.5 s)
    assert wait_until(lambda: len(stored()) >= 8 and _stats(settings)["in_flight"] > 0, 120, interval_s=0.1), \
        "never saw a stored batch with the next one at the frontier"
    kill(workers[1])
    assert wait_until(lambda: _stats(settings)["in_flight"] == 0, 10)  # calls the dead worker sent are answered
    before, asked = stored(), _stats(settings)["by_trace"]
    in_flight = set(asked) - before
    assert len(before) < len(ids), "the frontier worker had already finished: the kill was not mid-stream"
    assert in_flight, "no frontier call was in flight at the kill"

    run.worker("frontier", settings=settings)
    assert wait_until(lambda: len(stored()) == len(ids), 120), \
        f"{len(stored())} of {len(ids)} routed traces have a frontier verdict after the restart"
    run.assert_each_once(traces, [])

    counts = _stats(settings)["by_trace"]
    assert sorted(counts) == ids, "the frontier was not asked once at least for every routed trace"
    # (a pairwise trace costs two calls, one per answer order: compare with the calls made before the kill)
    assert sorted(t for t in in_flight if counts[t] > asked[t]) == sorted(in_flight), \
        "redelivery: every trace in flight at the kill is asked again by the restarted worker"
    assert [t for t in before if counts[t] != asked.get(t)] == [], "a stored frontier verdict was asked for again"

    rows = run.rows("SELECT trace_id, count(), any(status), any(label), any(inline_label) "
                    "FROM {db}.frontier_verdicts FINAL GROUP BY trace_id")
    assert sorted(r[0] for r in rows) == ids and all(r[1] == 1 for r in rows), "not one frontier verdict per trace"
    assert {r[2] for r in rows} == {"ok"}
    differs = sorted(t for t, _, _, label, inline in rows if label != inline)
    assert differs, "no disagreement in the sample: the check below would prove nothing"
    disagreements = run.rows("SELECT trace_id, count() FROM {db}.disagreements FINAL GROUP BY trace_id")
    assert sorted(t for t, _ in disagreements) == differs
    assert all(n == 1 for _, n in disagreements), "a disagreement is stored more than once after FINAL"
    print(f"\nkilled with {len(before)} of {len(ids)} frontier verdicts stored, {len(in_flight)} traces at the frontier; "
          f"{sum(counts.values())} frontier calls in all")
