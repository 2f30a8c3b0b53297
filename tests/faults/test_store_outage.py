"""Fault: the ClickHouse store server is down for a while (its process stopped, then restarted), or SIGKILLed.

Real processes on the private fault stack: ``judgeline worker inline`` (constant stub judge) keeps running while
the store server is stopped. Asserts backpressure: while the store is down no verdict is stored, the consumer group
commits no offset past what was stored before the outage, and the worker logs that it holds the batch; then
catch-up: once the server is back (same path, same port) every trace has exactly one verdict and every malformed
message exactly one dead letter after FINAL, and the group's committed offsets reach the end of the topic.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from fault_support import QUIET, log_text, outage

from operations.lag import committed_offsets
from stack import process
from stack import services as stack_mod
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


def test_store_sigkilled_mid_insert_loses_and_duplicates_nothing(fault_run, fault_stack, sample_traces):
    """The store server SIGKILLed (not stopped) while a paced stream is being stored (an insert every few tens of
    ms), restarted on the same path and port: nothing is lost, nothing is there twice after FINAL."""
    run = fault_run(stream={"batch_size": 4, "batch_within_s": 0.05})
    traces = sample_traces["pointwise"][:30] + sample_traces["pairwise"][:30]
    run.worker("inline", stub_ms=5)
    sent: list = []
    producer = threading.Thread(target=lambda: sent.append(run.send(traces, malformed=3, rate=10)))
    producer.start()  # 6 s of traffic in the background, a store insert every few tens of ms
    assert wait_until(lambda: run.accounted() >= 8, 30), "nothing was stored before the kill"
    assert run.accounted() < len(traces) + 3, "the stream was over before the kill"
    record = stack_mod.running_service(fault_stack, "clickhouse")
    try:
        os.kill(record.pid, signal.SIGKILL)
        assert wait_until(lambda: (process.stop(record, grace_s=0) or True) and not process.is_running(record), 10)
        time.sleep(2)  # the worker holds its batch meanwhile (the store is gone)
    finally:
        stack_mod.up(fault_stack, only=("clickhouse",), **QUIET)
        producer.join(30)
    (bad,) = sent
    run.wait_accounted(len(traces) + len(bad), timeout_s=90)
    run.assert_each_once(traces, bad)
