"""Fault: the inline worker is killed with SIGKILL in the middle of a batch, then restarted.

Real processes on the private fault stack: the broker, the store server and ``judgeline worker inline`` (the judge
replaced by the constant stub, 1 s per batch, so that the kill lands while a batch is being judged). The worker
commits offsets only every 60 s here, so when it is killed, after storing its first batches, nothing it consumed is
committed: the restarted worker gets every message again. The test observes that redelivery (every verdict stored
before the kill is replaced, after FINAL, by a later one: the new worker judged that trace again; raw row counts
cannot show it, background merges collapse them) and checks that every trace ends with
exactly one verdict and every malformed message with exactly one dead letter after FINAL.
"""

from __future__ import annotations

import pytest
from fault_support import kill

from stack.workers import wait_until

pytestmark = pytest.mark.integration


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(fault_run, sample_traces):
    run = fault_run(kafka={"commit_interval_s": 60.0})
    traces = sample_traces["pairwise"][:20] + sample_traces["pointwise"][:20]
    worker = run.worker("inline", stub_ms=1000)
    bad = run.send(traces, malformed=3)
    total = len(traces) + len(bad)

    assert wait_until(lambda: run.accounted() >= 8, 60), "the first batch was never stored"
    kill(worker)
    at_kill = run.accounted()
    before = dict(run.rows("SELECT trace_id, judged_at FROM {db}.verdicts FINAL"))
    assert at_kill < total, "the worker had already finished: the kill was not in the middle of the stream"

    run.worker("inline", stub_ms=1000)
    run.wait_accounted(total, timeout_s=120)
    run.assert_each_once(traces, bad)
    after = dict(run.rows("SELECT trace_id, judged_at FROM {db}.verdicts FINAL"))
    assert before, "nothing was stored before the kill"
    again = [t for t in before if after[t] > before[t]]
    assert sorted(again) == sorted(before), \
        f"no redelivery observed for {len(before) - len(again)} of the {len(before)} verdicts stored before the kill"
