"""Fault: the Triton server is stopped and restarted, under both policies for an unavailable judge.

Real processes on the private fault stack with the tiny judge served by a real Triton: two inline pipelines run
side by side through the same outage, one with ``stream.judge_unavailable=hold`` and one with ``=frontier`` (plus a
frontier worker and the replay frontier). While Triton is down:
- ``hold``: the worker retries (the Triton client's retries, then the held batch's backoff) and stores nothing;
  after the restart (same ports) every trace gets its inline verdict from the served judge version;
- ``frontier``: every trace goes to the frontier with reason ``judge_unavailable`` and its one verdict is the
  frontier's (``source=frontier``), with an ok frontier verdict beside it.
Both: every trace exactly one verdict, every malformed message exactly one dead letter, after FINAL.
"""

from __future__ import annotations

import time

import pytest
from fault_support import log_text, outage

from doubles import frontier_replay
from stack.workers import wait_until

pytestmark = pytest.mark.integration


def test_triton_down_hold_waits_and_frontier_policy_routes_then_recovers(
        fault_run, fault_stack, fault_triton, sample_traces, sample_gold):
    hold = fault_run(stream={"judge_unavailable": "hold"})
    routed = fault_run(stream={"judge_unavailable": "frontier"})
    traces = sample_traces["pairwise"][20:30] + sample_traces["pointwise"][20:30]

    routed_settings = routed.replay(sample_gold, frontier_replay.Faults(latency_ms=5))
    hold_worker = hold.worker("inline", ready=False)
    workers = [hold_worker, routed.worker("inline", settings=routed_settings, ready=False),
               routed.worker("frontier", settings=routed_settings, ready=False)]
    for run, w in zip((hold, routed, routed), workers):
        run.wait_ready(w)

    with outage(fault_stack, "triton") as triton:
        hold_bad = hold.send(traces, malformed=2)
        routed_bad = routed.send(traces, malformed=2)

        # frontier policy: every trace judged by the frontier while Triton is down
        routed.wait_accounted(len(traces) + len(routed_bad), timeout_s=120)
        rows = routed.rows("SELECT trace_id, source, route_reason, judge_name FROM {db}.verdicts FINAL")
        assert {(s, r, j) for _, s, r, j in rows} == {("frontier", "judge_unavailable", "gpt-4")}
        frontier = routed.rows("SELECT trace_id, status, request_reason, inline_label, count() "
                               "FROM {db}.frontier_verdicts FINAL GROUP BY ALL")
        assert sorted(t for t, *_ in frontier) == sorted(t.trace_id for t in traces)
        assert {(s, r, i, n) for _, s, r, i, n in frontier} == {("ok", "judge_unavailable", "", 1)}

        # hold policy: nothing judged, the worker holds its batch
        assert hold.count("SELECT count() FROM {db}.verdicts") == 0
        assert wait_until(lambda: "judging a batch" in log_text(hold_worker)
                          and "holding the batch" in log_text(hold_worker), 30)
        time.sleep(2)
        assert hold.count("SELECT count() FROM {db}.verdicts") == 0
        triton.restore()

    hold.wait_accounted(len(traces) + len(hold_bad), timeout_s=120)
    hold.assert_each_once(traces, hold_bad)
    versions = hold.rows("SELECT DISTINCT source, route_reason != 'judge_unavailable', judge_version "
                         "FROM {db}.verdicts FINAL")
    assert versions == [("inline", 1, fault_triton)]
    routed.assert_each_once(traces, routed_bad, settle_s=0)
