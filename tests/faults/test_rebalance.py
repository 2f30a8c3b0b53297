"""Fault: two inline workers in one consumer group, with rebalances in the middle of the stream.

Real processes on the private fault stack: one ``judgeline worker inline`` (constant stub judge, 1 s per batch of
at most 4) starts on a 4-partition traces topic; once part of the stream is stored a second worker joins the same
group (a rebalance while batches are in flight), then the first is killed with SIGKILL (a second rebalance, after
the dead member's session times out), so the second must finish the stream alone. Every trace ends with exactly
one verdict and every malformed message exactly one dead letter after FINAL.
"""

from __future__ import annotations

import pytest

from fault_support import kill
from infra.workers import wait_until, worker_ready

pytestmark = pytest.mark.integration


def test_second_worker_joins_and_first_dies_mid_stream_every_trace_once(fault_run, sample_traces):
    run = fault_run(stream={"batch_size": 4})
    traces = sample_traces["pairwise"][30:60] + sample_traces["pointwise"][30:60]
    first = run.worker("inline", stub_ms=1000)
    bad = run.send(traces, malformed=4)
    total = len(traces) + len(bad)

    assert wait_until(lambda: run.accounted() >= 4, 60)
    second = run.worker("inline", stub_ms=1000)  # ready: it holds partitions of the group now
    assert run.accounted() < total, "the first worker finished before the second joined: no rebalance mid-stream"

    assert wait_until(lambda: run.accounted() >= total // 2, 90)
    kill(first)
    assert run.accounted() < total, "the stream was done before the first worker was killed"

    run.wait_accounted(total, timeout_s=120)
    assert worker_ready(run.settings, second), "the second worker should hold every partition now"
    run.assert_each_once(traces, bad)
