"""Rolling upgrade: workers of this release and of the next minor release side by side lose nothing.

Real processes on the private fault stack. The "new" workers run this checkout with ``tests/faults/newer_release``
first on their PYTHONPATH: a simulated next minor release (schema version one minor higher, ``Trace`` with one more
optional field ``session_id``, not stored). Every trace is routed (stub judge, threshold 1.0) to a replay frontier.

- Phase 1, the inline workers upgraded half-way: an old and a new inline worker in one consumer group, and only the
  old frontier worker. Traces of both minor versions flow (the newer ones carry ``session_id``); the new inline
  worker's frontier requests (the newer minor) all reach the old frontier worker.
- Phase 2, the frontier workers too: a new frontier worker joins the old one's group; more traces of both versions.

After FINAL: every trace exactly one verdict and one ``ok`` frontier verdict, no dead letter at all (nothing was
refused for its version). Where the old inline worker judged a newer trace, the routed trace it stored keeps
``session_id`` under ``metadata["_unknown"]``; where the new one did, it is a field the new release knows (not
kept there). Both happened, and each old worker counted the newer messages it accepted (``rolled_forward`` on its
``/metrics``): the old frontier worker handled the new inline worker's requests; the new frontier worker judged
requests too.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from doubles.frontier_replay import Faults
from operations.produce import produce
from schemas import versioning
from stack.workers import wait_until

pytestmark = pytest.mark.integration

NEWER_RELEASE = Path(__file__).parent / "newer_release"
MAJOR, MINOR = versioning.parse_version(versioning.SCHEMA_VERSION)
NEXT_MINOR = f"{MAJOR}.{MINOR + 1}"
N = 40  # per phase; every other trace of the newer minor version


def newer_env() -> dict[str, str]:
    path = [str(NEWER_RELEASE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path)}


def messages(traces) -> list[tuple[bytes, bytes]]:
    """Even traces as this release writes them, odd ones as the next minor release's producer does."""
    out = []
    for i, t in enumerate(traces):
        value = t.to_bytes()
        if i % 2:
            value = json.dumps({**json.loads(value), "schema_version": NEXT_MINOR,
                                "session_id": f"session-{t.trace_id}"}).encode()
        out.append((t.trace_id.encode(), value))
    return out


def stage_events(settings, record, stage: str, event: str = "rolled_forward") -> float:
    """A worker's ``judgeline_stage_events_total`` for (stage, event), read from its ``/metrics``."""
    url = f"http://{settings.stack.bind_host}:{record.ports['web']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "judgeline_stage_events_total" and s.labels == {"stage": stage, "event": event})


def test_old_and_new_workers_side_by_side_lose_nothing(fault_run, sample_traces, sample_gold):
    run = fault_run(routing={"threshold": 1.0, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    traces = (sample_traces["pointwise"] + sample_traces["pairwise"])[:2 * N]
    assert len(traces) == 2 * N
    settings = run.replay(sample_gold, Faults(latency_ms=5))
    run.settings = settings
    old_inline = run.worker("inline", stub_ms=5, name="inline-old", ready=False)
    new_inline = run.worker("inline", stub_ms=5, name="inline-new", ready=False, env=newer_env())
    old_frontier = run.worker("frontier", name="frontier-old", ready=False)
    for w in (old_inline, new_inline, old_frontier):  # each holds partitions of its group
        run.wait_ready(w)

    def frontier_ok() -> int:
        return run.count("SELECT countIf(status = 'ok') FROM {db}.frontier_verdicts FINAL")

    sent = messages(traces[:N])
    result = produce(settings, sent)
    assert (result.sent, result.failed) == (N, 0), result.first_error
    run.wait_accounted(N, timeout_s=120)
    assert wait_until(lambda: frontier_ok() == N, 120), f"{frontier_ok()} of {N} frontier verdicts in phase 1"
    assert stage_events(settings, old_frontier, "frontier") > 0, \
        "the old frontier worker saw no request of the newer minor version"

    new_frontier = run.worker("frontier", name="frontier-new", env=newer_env())
    run.wait_ready(old_frontier)
    result = produce(settings, messages(traces[N:]))
    assert (result.sent, result.failed) == (N, 0), result.first_error
    run.wait_accounted(2 * N, timeout_s=120)
    assert wait_until(lambda: frontier_ok() == 2 * N, 120), f"{frontier_ok()} of {2 * N} frontier verdicts"

    run.assert_each_once(traces, [])  # one verdict per trace and no dead letter at all, after FINAL
    assert run.rows("SELECT count(), uniqExact(trace_id), countIf(status != 'ok') FROM {db}.frontier_verdicts "
                    "FINAL") == [(2 * N, 2 * N, 0)]

    newer = {t.trace_id for i, t in enumerate(traces) if i % 2}
    stored = dict(run.rows("SELECT trace_id, metadata FROM {db}.traces FINAL"))
    assert sorted(stored) == sorted(t.trace_id for t in traces), "every routed trace is stored once"
    kept = {tid: json.loads(m).get(versioning.UNKNOWN_KEY) for tid, m in stored.items()}
    assert all(kept[tid] is None for tid in stored if tid not in newer), "an older trace got kept fields"
    by_old = {tid for tid in newer if kept[tid] is not None}
    assert all(kept[tid] == {"session_id": f"session-{tid}"} for tid in by_old), \
        "a newer trace the old worker judged lost its session_id"
    assert 0 < len(by_old) < len(newer), "the old and the new inline worker did not both judge newer traces"
    assert stage_events(settings, old_inline, "inline") == len(by_old)
    assert stage_events(settings, new_inline, "inline") == 0  # its own version is the newer one
    assert stage_events(settings, new_frontier, "frontier", "requests") > 0, "the new frontier worker judged nothing"
    assert stage_events(settings, new_frontier, "frontier") == 0  # nothing is newer than its own version
