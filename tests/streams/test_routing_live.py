"""Routing from live evidence on the real broker, store and worker (issue 15's done-when): a running inline worker
applies each new policy from the compacted routing-policies topic without a restart, and the controller turns stored
evidence into a stored, published policy that the same worker then applies; `route-policy watch` stops cleanly on
SIGTERM.

One `judgeline worker inline` process (the constant stub judge: every verdict `pass` at confidence 0.95) on the
session stack, with topics, consumer group and database of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest
from fault_support import FaultRun, log_text

from judge_engine.online.policy import Rule, RoutingPolicy, Segment
from operations.route_policy import store_and_publish, update
from schemas.trace import Trace
from schemas.verdict import FrontierVerdict
from stack import process
from stack.workers import settings_env, wait_until
from streams.clickhouse import connect
from streams.sink import ClickHouseStore

pytestmark = pytest.mark.integration

APP = Segment("default", "live", "pointwise", "*")
COLUMNS = "trace_id, route_reason, policy_version, route_threshold, sample_rate"


def policy(version: int, rule: Rule) -> RoutingPolicy:
    everything = Rule(Segment.everything(), 1.0, 1.0, True, "unseen_segment", {"n": 0})
    return RoutingPolicy(version, datetime.now(timezone.utc), (everything, rule), 0.05, 0.95)


def traces(run: FaultRun, wave: str, n: int) -> list[Trace]:
    return [Trace(trace_id=f"{run.run_id}-{wave}-{i}", app="live", kind="pointwise",
                  question=f"Is {i} even?", answer="yes" if i % 2 == 0 else "no") for i in range(n)]


def wave_rows(run: FaultRun, wave: list[Trace]) -> list[tuple]:
    ids = {t.trace_id for t in wave}
    return [r for r in run.rows(f"SELECT {COLUMNS} FROM {{db}}.verdicts FINAL ORDER BY trace_id") if r[0] in ids]


def topic_policies(settings) -> list[tuple[bytes, int]]:
    """(key, version) of every message on the run's routing-policies topic, read from the beginning."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"probe-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.kafka.topics.routing_policies, 0, OFFSET_BEGINNING)])
    out, deadline = [], time.monotonic() + 10
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            out.append((message.key(), RoutingPolicy.from_json(message.value()).version))
        elif message is None and out:
            break
    consumer.close()
    return out


def test_a_running_worker_applies_each_new_policy_and_the_controller_publishes_from_evidence(stack):
    run = FaultRun.create(stack, routing={"policy_wait_s": 30, "min_evidence": 5, "accepted_error_rate": 0.3,
                                          "calibration_sample_rate": 0.0, "max_sample_rate": 0.3})
    settings = run.settings
    client = connect(settings)
    try:
        # v1 routes nothing of the app (threshold 0, no sample); published before the worker starts
        store_and_publish(settings, client, policy(1, Rule(APP, 0.0, 0.0, False, "test", {})))
        worker = run.worker("inline", stub_ms=1)
        first = traces(run, "a", 12)
        run.send(first)
        run.wait_accounted(len(first), timeout_s=60)
        assert {r[1:] for r in wave_rows(run, first)} == {("", 1, 0.0, 0.0)}

        # v2 routes the app entirely: the same worker applies it from the topic
        store_and_publish(settings, client, policy(2, Rule(APP, 1.0, 1.0, True, "test", {})))
        assert wait_until(lambda: "routing policy version 2 " in log_text(worker), 30), log_text(worker)[-2000:]
        second = traces(run, "b", 12)
        run.send(second)
        run.wait_accounted(len(first) + len(second), timeout_s=60)
        assert {r[1:] for r in wave_rows(run, second)} == {("route_all", 2, 1.0, 1.0)}
        assert process.is_running(worker) and "routing policy version 1 " in log_text(worker)

        # the frontier agrees with every routed verdict: the controller fits the app from that evidence
        ClickHouseStore(settings, client=client).insert_sync("frontier_verdicts", [
            FrontierVerdict(trace_id=t.trace_id, app=t.app, kind=t.kind, criterion=t.criterion, judge_name="gpt-4",
                            label="pass", request_reason="route_all", inline_label="pass",
                            inline_judge_version="stub", trace_time=t.timestamp) for t in second])
        result = update(settings, client=client)
        assert result.published and result.policy.version == 3 and result.evidence == len(second)
        fine = result.policy.rule_for(Segment("default", "live", "pointwise", "overall"))
        assert not fine.routes_everything and fine.threshold == 0.0 and fine.evidence["n"] == len(second)
        stored = run.rows("SELECT version, reason, judge_version FROM {db}.routing_policies FINAL ORDER BY version")
        assert stored == [(1, "manual", ""), (2, "manual", ""), (3, "scheduled", "stub")]
        scope = settings.routing.policy_scope.encode()
        assert topic_policies(settings) == [(scope, 1), (scope, 2), (scope, 3)]

        assert wait_until(lambda: "routing policy version 3 " in log_text(worker), 30)
        third = traces(run, "c", 12)
        run.send(third)
        run.wait_accounted(len(first) + len(second) + len(third), timeout_s=60)
        rows = wave_rows(run, third)
        assert {(r[2], r[3], round(r[4], 5)) for r in rows} == {(3, 0.0, round(fine.sample_rate, 5))}  # Float32
        assert {r[1] for r in rows} <= {"", "calibration_sample"}

        # the controller as a long-running process: SIGTERM ends it cleanly
        env = {**os.environ, **settings_env(settings)}
        out_path = settings.state_dir / f"watch-{run.run_id}.log"
        with open(out_path, "w") as out:
            watch = subprocess.Popen([sys.executable, "-m", "cli.main", "route-policy", "watch", "--every", "1"],
                                     env=env, cwd=settings.state_dir, stdout=out, stderr=subprocess.STDOUT)
        try:
            # two updates ran (unchanged evidence: nothing new is published), then SIGTERM
            assert wait_until(lambda: out_path.read_text().count("routing policy version 3 (unchanged") >= 2, 90), \
                out_path.read_text()[-2000:]
            watch.send_signal(signal.SIGTERM)
            watch.wait(timeout=30)
        finally:
            if watch.poll() is None:
                watch.kill()
        output = out_path.read_text()
        assert watch.returncode == 0, output
        assert "controller stopped after" in output
        assert run.count("SELECT max(version) FROM {db}.routing_policies FINAL") == 3

        # update and show as a user runs them
        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "cli.main", "route-policy", *args], env=env,
                                  cwd=settings.state_dir, capture_output=True, text=True, timeout=120)

        shown = cli("show")
        assert shown.returncode == 0, shown.stderr
        assert "routing policy version 3 of scope default" in shown.stdout
        assert any(line.startswith("default/live/pointwise/overall ") and " fitted" in line
                   for line in shown.stdout.splitlines()), shown.stdout
        as_json = cli("show", "--json")
        assert RoutingPolicy.from_json(as_json.stdout) == result.policy
        forced = cli("update", "--force")
        assert forced.returncode == 0 and "routing policy version 4 (published" in forced.stdout, forced.stderr
        assert topic_policies(settings)[-1] == (scope, 4)
    finally:
        run.stop()
