"""Shutdown (issue 12, point 7): SIGTERM ends a worker within 10 s without committing the batch it was judging.

A real ``judgeline worker inline`` on the private fault stack gets a batch of 8 traces and is sent SIGTERM while its
stub judge is judging it. It must exit within 10 s. When the judge needs 30 s (longer than the shutdown allows) the
batch is abandoned: nothing of it stored, its offsets uncommitted, so a second worker started afterwards judges all
8 traces. When it needs 4 s the worker may finish the batch first (store, publish, then commit). Either way every
trace ends exactly once after FINAL.

After an agent crash (``--crash-agent-on-key``: the agent raises on the batch holding that key, outside every
guarded path, the fault hook of ``doubles.faults``; 12 traces stored and committed before it) the worker stops by itself (``streams.app.register_agent``), and SIGTERM sent
right after the crash finds it stopping: it is gone within 10 s, no offset of the crashed batch is ever committed,
and a worker started afterwards judges every trace exactly once. (Before, Faust restarted the crashed agent and
committed past the crashed batch: its messages were lost.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time

import pytest
from fault_support import log_text

from doubles.faults import CRASH_MESSAGE
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




def test_an_agent_crash_ends_the_worker_within_10_s_and_never_commits_the_crashed_batch(fault_run, sample_traces):
    run = fault_run(stream={"batch_size": 4, "batch_within_s": 0.2})
    first, then = sample_traces["pointwise"][:12], sample_traces["pointwise"][12:36]
    worker = run.worker("inline", stub_ms=50, args=("--crash-agent-on-key", then[5].trace_id))
    run.send(first)
    assert wait_until(lambda: sum(o or 0 for o in run.committed().values()) == len(first), 60), \
        "the first traces were never committed"
    run.send(then)  # the sixth of these is the key the agent crashes on
    found = re.compile(re.escape(CRASH_MESSAGE) + " " + re.escape(then[5].trace_id) + r": offsets (\{[^}]*\})")
    assert wait_until(lambda: found.search(log_text(worker)), 60, interval_s=0.1), "the agent never crashed"
    started = time.monotonic()
    crashed = {int(p): span for p, span in json.loads(found.search(log_text(worker)).group(1)).items()}
    with contextlib.suppress(ProcessLookupError):  # SIGTERM now as well: the worker may be gone already
        os.killpg(worker.pid, signal.SIGTERM)
    assert wait_until(lambda: not process.is_running(worker), 10, interval_s=0.1), "still running 10 s after the crash"
    took = time.monotonic() - started
    assert "agent judgeline-inline crashed: AgentCrash" in log_text(worker), "the crash was not reported"
    stored = run.count("SELECT count() FROM {db}.verdicts")
    committed = run.committed()
    assert sum(o or 0 for o in committed.values()) >= len(first)
    assert all((committed.get(p) or 0) <= start for p, (start, _) in crashed.items()), \
        f"an offset of the crashed batch {crashed} was committed: {committed}"

    run.worker("inline", stub_ms=1)  # same group: starts from the committed offsets
    run.wait_accounted(len(first) + len(then), timeout_s=90)
    run.assert_each_once(first + then, [])
    print(f"\nagent crash on the batch {crashed}: worker gone {took:.1f} s after it, {stored} verdicts stored, "
          f"committed {committed}")
