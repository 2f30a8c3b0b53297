"""Fault: the inline worker is killed with SIGKILL in the middle of a batch, then restarted.

Real processes on the private fault stack: the broker, the store server and ``judgeline worker inline`` (the judge
replaced by the constant stub, 1 s per batch, so that the kill lands while a batch is being judged). Nothing of an
interrupted batch was committed, so the restarted worker gets it again: every trace ends with exactly one verdict
and every malformed message with exactly one dead letter after FINAL.
"""

from __future__ import annotations

import pytest
from fault_support import kill

from stack.workers import wait_until

pytestmark = pytest.mark.integration


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(fault_run, sample_traces):
    run = fault_run()
    traces = sample_traces["pairwise"][:20] + sample_traces["pointwise"][:20]
    worker = run.worker("inline", stub_ms=1000)
    bad = run.send(traces, malformed=3)
    total = len(traces) + len(bad)

    assert wait_until(lambda: run.accounted() >= 8, 60), "the first batch was never stored"
    kill(worker)
    at_kill = run.accounted()
    assert at_kill < total, "the worker had already finished: the kill was not in the middle of the stream"

    run.worker("inline", stub_ms=1000)
    run.wait_accounted(total, timeout_s=120)
    raw = run.assert_each_once(traces, bad)
    assert raw["verdicts"] >= len(traces)
