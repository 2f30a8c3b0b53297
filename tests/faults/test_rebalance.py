"""Fault: two inline workers in one consumer group, with rebalances in the middle of the stream.

Real processes on the private fault stack: one ``judgeline worker inline`` (constant stub judge, 1 s per batch of
at most 4) consumes a 4-partition traces topic while the traces arrive at 3 per second; once part of the stream is
stored a second worker joins the same group (a rebalance while batches are in flight), then the first is killed
with SIGKILL (a second rebalance, after the dead member's session times out), so the second must finish the stream
alone. The stream is paced, so both rebalances happen while it still flows, however slowly the machine starts the
workers. Every trace ends with exactly one verdict and every malformed message exactly one dead letter after FINAL.
"""

from __future__ import annotations

import threading

import pytest
from fault_support import kill

from stack.workers import wait_until, worker_ready

pytestmark = pytest.mark.integration


def test_second_worker_joins_and_first_dies_mid_stream_every_trace_once(fault_run, sample_traces):
    run = fault_run(stream={"batch_size": 4})
    traces = sample_traces["pairwise"][30:60] + sample_traces["pointwise"][30:60]
    first = run.worker("inline", stub_ms=1000)
    bad: list = []
    total = len(traces) + 4  # and 4 malformed messages
    sender = threading.Thread(target=lambda: bad.extend(run.send(traces, malformed=4, rate=3)))
    sender.start()
    try:
        assert wait_until(lambda: run.accounted() >= 4, 60)
        second = run.worker("inline", stub_ms=1000)  # ready: it holds partitions of the group now
        assert run.accounted() < total, "the stream was done before the second worker joined: no rebalance mid-stream"

        assert wait_until(lambda: run.accounted() >= len(traces) // 2, 90)
        kill(first)
        assert run.accounted() < total, "the stream was done before the first worker was killed"
    finally:
        sender.join()

    run.wait_accounted(total, timeout_s=120)
    assert worker_ready(run.settings, second), "the second worker should hold every partition now"
    run.assert_each_once(traces, bad)
