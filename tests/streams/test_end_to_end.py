"""The whole pipeline on the real services: traces -> inline worker (Triton judge) -> ClickHouse, routed traces ->
frontier worker (openai client -> replay server) -> ClickHouse.

A smaller version of `make demo`: 40 traces of the synthetic sample (both kinds), one of them sent twice (a
redelivery), and malformed messages, through real `judgeline worker` processes on the session stack with the tiny
judge served by Triton. Asserts that every produced trace has exactly one verdict or dead letter, that every routing
decision follows the threshold and the calibration sample, and that frontier verdicts and disagreements are stored.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from tests_support import serve_tiny_judge

from doubles import frontier_replay
from judge_engine.online.routing import in_calibration_sample, route
from operations.produce import malformed_messages, produce, traces_from_gold
from stack import process
from stack.topics import ensure_topics
from stack.workers import start_worker, wait_until, wait_worker_ready

pytestmark = pytest.mark.integration

FLIP = {"A": "B", "B": "A", "tie": "A", "pass": "fail", "fail": "pass"}


def _frontier_gold(sample_gold: Path, out: Path) -> None:
    """The sample with the teacher's verdict flipped on every third item, so that the frontier disagrees."""
    lines = []
    for i, line in enumerate(sample_gold.read_text().splitlines()):
        item = json.loads(line)
        if i % 3 == 0:
            item["teacher"] = {k: FLIP[v] for k, v in item["teacher"].items()}
        lines.append(json.dumps(item))
    out.write_text("\n".join(lines) + "\n")


def test_traces_flow_to_verdicts_frontier_verdicts_and_disagreements(stack, store, tiny_judge, sample_gold, tmp_path):
    client, base = store
    db = base.clickhouse.database
    version = serve_tiny_judge(base, tiny_judge)
    run = uuid.uuid4().hex[:8]
    topics = {name: f"judgeline.{name}.{run}" for name in
              ("traces", "frontier_requests", "verdicts", "frontier_verdicts", "dead_letters")}
    settings = base.model_copy(update={
        "kafka": base.kafka.model_copy(update={
            "topics": base.kafka.topics.model_copy(update={**topics, "partitions": 2}),
            "consumer_group": f"inline-{run}", "frontier_consumer_group": f"frontier-{run}"}),
        "routing": base.routing.model_copy(update={"threshold": 0.8, "calibration_sample_rate": 0.3,
                                                   "without_policy": "threshold"}),
        "stream": base.stream.model_copy(update={"batch_size": 16, "batch_within_s": 0.1}),
    })
    ensure_topics(settings)
    gold = tmp_path / "frontier-gold.jsonl"
    _frontier_gold(sample_gold, gold)
    replay = frontier_replay.start(settings, [gold], faults=frontier_replay.Faults(latency_ms=5))
    workers = []
    try:
        process.wait_healthy(replay, lambda: frontier_replay.healthy(settings, replay), 60)
        settings = settings.model_copy(update={
            "frontier": settings.frontier.model_copy(update={"base_url": replay.extra["base_url"],
                                                             "rate_limit_rps": 200})})
        workers = [start_worker(settings, "inline", name=f"inline-{run}"),
                   start_worker(settings, "frontier", name=f"frontier-{run}")]
        for w in workers:
            wait_worker_ready(settings, w, timeout_s=90)

        all_traces = [t for _, t in traces_from_gold(sample_gold)]  # the gold ids: the replay tells items apart by them
        traces = all_traces[:20] + all_traces[-20:]  # pairwise first in the sample, pointwise last
        bad = malformed_messages(6, f"{run}-")
        messages = [(t.trace_id.encode(), t.to_bytes()) for t in traces] + bad
        messages.append(messages[0])  # the same trace again: stored once
        result = produce(settings, messages)
        assert (result.sent, result.failed) == (len(messages), 0)

        ids = {t.trace_id for t in traces}

        def count(sql: str) -> int:
            return client.query(sql).result_rows[0][0]

        def inline_done() -> bool:
            return (count(f"SELECT count() FROM {db}.verdicts FINAL") + count(f"SELECT count() FROM {db}.dead_letters FINAL")
                    >= len(ids) + len(bad))

        assert wait_until(inline_done, 60), "not every trace got a verdict or a dead letter within 60 s"
        routed = count(f"SELECT count() FROM {db}.verdicts FINAL WHERE route_reason != ''")
        assert wait_until(lambda: count(f"SELECT count() FROM {db}.frontier_verdicts FINAL") >= routed, 60)
        time.sleep(1.5)  # anything extra (a duplicate row, a stray message) would land now

        # every produced trace: exactly one verdict; every malformed message: exactly one dead letter
        rows = client.query(
            f"SELECT trace_id, count(), any(label), any(confidence), any(route_reason), any(judge_version), "
            f"any(produced_at), any(stored_at) FROM {db}.verdicts FINAL GROUP BY trace_id").result_rows
        assert {r[0] for r in rows} == ids and all(r[1] == 1 for r in rows)
        assert {r[5] for r in rows} == {version}
        assert all(r[6] is not None and r[7] >= r[6] for r in rows), "produced_at / stored_at"
        letters = client.query(f"SELECT key, hex(raw), stage, error FROM {db}.dead_letters FINAL").result_rows
        assert sorted((k, raw) for k, raw, _, _ in letters) == sorted((k.decode(), v.hex().upper()) for k, v in bad)
        assert all(stage == "parse" and error for _, _, stage, error in letters)
        assert len(rows) + len(letters) == len(ids) + len(bad)

        # routing follows the threshold and the deterministic sample
        reasons = {}
        for trace_id, _, _, confidence, reason, *_ in rows:
            if abs(confidence - settings.routing.threshold) < 1e-5:
                continue  # Float32 storage could move it across the threshold
            assert (reason or None) == route(confidence, trace_id, settings.routing), trace_id
            reasons[trace_id] = reason
        assert "low_confidence" in reasons.values() and "calibration_sample" in reasons.values()
        assert all(in_calibration_sample(t, 0.3) for t, r in reasons.items() if r == "calibration_sample")

        # every routed trace has a frontier verdict for its reason; disagreements are exactly where they differ
        frontier = client.query(
            f"SELECT f.trace_id, f.status, f.label, f.request_reason, f.inline_label, v.label, v.route_reason "
            f"FROM {db}.frontier_verdicts AS f FINAL JOIN {db}.verdicts AS v FINAL ON f.trace_id = v.trace_id"
        ).result_rows
        routed_ids = {r[0] for r in rows if r[4]}
        assert {r[0] for r in frontier} == routed_ids and len(frontier) == len(routed_ids)
        odd = [r for r in frontier if not (r[1] == "ok" and r[3] == r[6] and r[4] == r[5])]
        assert odd == [], odd
        expected = {t for t, _, label, _, inline, _, _ in frontier if label != inline}
        stored = client.query(f"SELECT trace_id, inline_label, frontier_label FROM {db}.disagreements FINAL").result_rows
        assert {t for t, *_ in stored} == expected and len(stored) == len(expected)
        assert expected, "the replay flips every third teacher verdict: some routed trace must disagree"
        assert all(i != f for _, i, f in stored)
    finally:
        for record in [*workers, replay]:
            process.stop(record)
