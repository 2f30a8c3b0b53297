"""Fault: the ClickHouse store server is down for a while (its process stopped, then restarted).

Real processes on the private fault stack: ``judgeline worker inline`` (constant stub judge) keeps running while
the store server is stopped. Asserts backpressure: while the store is down no verdict is stored, the consumer group
commits no offset past what was stored before the outage, and the worker logs that it holds the batch; then
catch-up: once the server is back (same path, same port) every trace has exactly one verdict and every malformed
message exactly one dead letter after FINAL, and the group's committed offsets reach the end of the topic.
"""

from __future__ import annotations

import time

import pytest
from fault_support import log_text, outage

from operations.lag import committed_offsets
from stack.workers import wait_until

pytestmark = pytest.mark.integration


def _committed(run) -> int:
    return sum(o or 0 for o in committed_offsets(run.settings, run.settings.kafka.consumer_group,
                                                run.settings.kafka.topics.traces).values())


def test_store_down_holds_consumption_then_catches_up(fault_run, fault_stack, sample_traces):
    run = fault_run()
    before = sample_traces["pointwise"][:20]
    during = sample_traces["pairwise"][:20]
    worker = run.worker("inline", stub_ms=20)
    run.send(before)
    run.wait_accounted(len(before), timeout_s=60)
    assert wait_until(lambda: _committed(run) == len(before), 30), "the stored batches were never committed"

    with outage(fault_stack, "clickhouse") as store:
        bad = run.send(during, malformed=3)
        assert wait_until(lambda: "holding the batch" in log_text(worker).split("storing")[-1], 30), \
            "the worker never reported that it holds a batch while the store is down"
        held_at = _committed(run)
        time.sleep(4)  # several held retries (backoff capped at 1 s)
        assert held_at == len(before) and _committed(run) == len(before), \
            "offsets were committed while the store was down"
        assert log_text(worker).count("holding the batch") >= 2
        store.restore()

    run.wait_accounted(len(before) + len(during) + len(bad), timeout_s=90)
    run.assert_each_once(before + during, bad)
    total = len(before) + len(during) + len(bad)
    assert wait_until(lambda: _committed(run) == total, 30), "the group did not commit up to the end after catch-up"
