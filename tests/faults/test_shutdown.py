"""Shutdown (issue 12, point 7): SIGTERM ends a worker within 10 s without committing the batch it was judging.

A real ``judgeline worker inline`` on the private fault stack gets a batch of 8 traces and is sent SIGTERM while its
stub judge is judging it. It must exit within 10 s. When the judge needs 30 s (longer than the shutdown allows) the
batch is abandoned: nothing of it stored, its offsets uncommitted, so a second worker started afterwards judges all
8 traces. When it needs 4 s the worker may finish the batch first (store, publish, then commit). Either way every
trace ends exactly once after FINAL.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from stack import process
from stack.workers import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("judge_ms", [30_000, 4_000])
def test_sigterm_mid_batch_exits_within_10_s_and_commits_nothing_unfinished(fault_run, sample_traces, judge_ms):
    run = fault_run(stream={"batch_size": 8, "batch_within_s": 0.5},
                    routing={"threshold": 0.0, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    traces = sample_traces["pointwise"][:8]
    worker = run.worker("inline", stub_ms=judge_ms)
    run.send(traces)
    time.sleep(2.0)  # the batch is fetched (fetch wait 100 ms, batch window 0.5 s) and the stub is judging it
    assert run.count("SELECT count() FROM {db}.verdicts") == 0, "the batch finished before the signal"
    started = time.monotonic()
    os.killpg(worker.pid, signal.SIGTERM)
    assert wait_until(lambda: not process.is_running(worker), 10, interval_s=0.1), "still running 10 s after SIGTERM"
    took = time.monotonic() - started
    stored = run.count("SELECT count() FROM {db}.verdicts")
    if judge_ms > 10_000:
        assert stored == 0, "the abandoned batch was stored"
    else:
        assert stored in (0, len(traces)), "a batch was stored in part"

    run.worker("inline", stub_ms=1)  # same group: starts from the committed offsets
    run.wait_accounted(len(traces), timeout_s=90)
    run.assert_each_once(traces, [])
    print(f"\njudge {judge_ms} ms: SIGTERM to exit {took:.1f} s, {stored} verdicts stored before the restart")
