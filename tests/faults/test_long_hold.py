"""Fault: the store is down for longer than the consumer's max poll interval and session timeout.

Real processes on the private fault stack, the consumer's limits made small through settings (session timeout 3 s,
max poll interval 3 s): ``judgeline worker inline`` (constant stub judge) holds a batch while the store server is
stopped for about four times those limits, and a second worker joins the group during the outage (a rebalance while
the first one holds: partitions move to the newcomer, which holds too). Asserts: a rebalance happened during the
hold; while the store is down no offset is committed past what was stored before; both workers are still running
when it is back; then every trace
has exactly one verdict and every malformed message exactly one dead letter after FINAL, and the group's committed
offsets reach the end of the topic.
"""

from __future__ import annotations

import time

import pytest
from fault_support import log_text, outage

from stack import process
from stack.workers import wait_until

pytestmark = pytest.mark.integration

LIMIT_S = 3.0


def test_a_hold_longer_than_the_poll_interval_loses_and_duplicates_nothing(fault_run, fault_stack, sample_traces):
    run = fault_run(kafka={"session_timeout_ms": int(LIMIT_S * 1000), "heartbeat_interval_ms": 1000,
                           "max_poll_interval_s": LIMIT_S})
    before = sample_traces["pointwise"][:16]
    during = sample_traces["pairwise"][:32]
    first = run.worker("inline", stub_ms=20)

    def committed() -> int:
        return sum(o or 0 for o in run.committed().values())

    run.send(before)
    run.wait_accounted(len(before), timeout_s=60)
    assert wait_until(lambda: committed() == len(before), 30), "the stored batches were never committed"

    with outage(fault_stack, "clickhouse") as store:
        bad = run.send(during, malformed=3)
        assert wait_until(lambda: "holding the batch" in log_text(first).split("storing")[-1], 30), \
            "the worker never reported that it holds a batch while the store is down"
        second = run.worker("inline", stub_ms=20, ready=False)  # joins the group while the first one holds
        held_since = time.monotonic()

        def rebalanced() -> bool:  # aiokafka's line when the group rebalances under the holding worker
            return "Revoking previously assigned partitions" in log_text(first).split("holding the batch", 1)[1]

        # at least four times the limits, and until the newcomer has joined (its start takes seconds on 2 cores)
        while time.monotonic() - held_since < 4 * LIMIT_S or not rebalanced():
            assert committed() == len(before), "an offset was committed while the store was down"
            assert time.monotonic() - held_since < 120, "no rebalance happened during the hold"
            time.sleep(0.5)
        assert process.is_running(first) and process.is_running(second)
        store.restore()

    total = len(before) + len(during) + len(bad)
    run.wait_accounted(total, timeout_s=120)
    run.assert_each_once(before + during, bad)
    assert wait_until(lambda: committed() == total, 60), "the group did not commit up to the end after catch-up"
    assert process.is_running(first) and process.is_running(second)
