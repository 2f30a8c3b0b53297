"""Fault: the broker is stopped and started again on the same port while a worker runs.

Real processes on the private fault stack: ``judgeline worker inline`` (constant stub judge, every trace routed) and
``judgeline worker frontier`` (replay frontier) keep running while the embedded broker (Tansu, memory storage) is stopped and restarted at the same address. The embedded broker keeps
nothing across a restart (topics, messages, committed offsets and groups are gone: a limit of the development
broker, not of Apache Kafka, see docs/reliability.md), so the test re-creates the run's topics as ``judgeline up``
does and then publishes new traces, more per partition than before the restart (their offsets start again at 0:
a consumer that kept its old position would skip them). Asserts: the workers are the same processes throughout (they
reconnect without a restart), every trace stored before the restart keeps its one verdict, every trace and
malformed message produced after the restart is judged or dead-lettered exactly once, and every trace has exactly
one frontier verdict (the inline worker's frontier requests published after the restart reach the frontier worker),
all after FINAL; the inline group's committed offsets then reach the end of the new topic.
"""

from __future__ import annotations

import time

import pytest
from fault_support import outage

from doubles.frontier_replay import Faults
from stack import process
from stack.topics import ensure_topics
from stack.workers import wait_until

pytestmark = pytest.mark.integration


def test_broker_restarted_on_the_same_port_the_workers_reconnect_and_judge_what_follows(
        fault_run, fault_stack, sample_traces, sample_gold):
    run = fault_run(routing={"threshold": 1.0, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    before = sample_traces["pointwise"][:12]
    after = sample_traces["pairwise"][:32]
    settings = run.replay(sample_gold, Faults())
    worker = run.worker("inline", stub_ms=5, ready=False)
    frontier = run.worker("frontier", settings=settings, ready=False)
    for w in (worker, frontier):
        run.wait_ready(w, settings)

    def frontier_verdicts() -> list[tuple[str, int]]:
        return run.rows("SELECT trace_id, count() FROM {db}.frontier_verdicts FINAL GROUP BY trace_id")

    run.send(before)
    run.wait_accounted(len(before), timeout_s=60)
    assert wait_until(lambda: len(frontier_verdicts()) == len(before), 60)
    assert wait_until(lambda: sum(o or 0 for o in run.committed().values()) == len(before), 30)

    with outage(fault_stack, "broker") as broker:
        time.sleep(3)  # the outage lasts a few heartbeats: the worker's connections fail meanwhile
        assert process.is_running(worker) and process.is_running(frontier), "a worker exited while the broker was down"
        broker.restore()  # same port, empty: nothing of the run's topics is left
    ensure_topics(run.settings)

    bad = run.send(after, malformed=3)
    run.wait_accounted(len(before) + len(after) + len(bad), timeout_s=180)
    run.assert_each_once(before + after, bad)
    assert wait_until(lambda: len(frontier_verdicts()) == len(before) + len(after), 120), \
        f"{len(frontier_verdicts())} of {len(before) + len(after)} traces have a frontier verdict"
    fv = frontier_verdicts()
    assert sorted(t for t, _ in fv) == sorted(t.trace_id for t in before + after) and all(n == 1 for _, n in fv)
    assert process.is_running(worker) and process.is_running(frontier), "a worker did not survive the restart"
    assert wait_until(lambda: sum(o or 0 for o in run.committed().values()) == len(after) + len(bad), 60), \
        f"the group did not commit up to the end of the new topic: {run.committed()}"
