"""Fault: the frontier answers with 429s, 500s and timeouts, or the spend budget runs out.

Real processes on the private fault stack: one inline worker (constant stub judge, threshold 1.0 so that every
trace is routed) and three frontier workers, each in a consumer group and database of its own, consuming the same
frontier requests from a replay frontier with injected faults:
- 429 and 500: half of the requests refused with 429 (Retry-After 50 ms), half of the rest with 500, deterministically
  by arrival order; one retry allowed. Both outcomes must occur (3 of 4 attempts fail, so neither every trace nor
  none can succeed): ok verdicts after at most 2 attempts, the others recorded as ``retries_exhausted`` after exactly
  2 attempts, naming the error; the server saw exactly the attempts recorded (no hidden retries).
- timeouts: every answer takes 1.5 s against a 0.3 s client timeout: every verdict ``retries_exhausted`` after 2
  attempts, the error naming the timeout.
- budget: a healthy frontier but a 0.05 USD budget: some ok, the rest ``budget_exhausted`` with no call made, and
  the spend within the budget.
Every trace keeps exactly one (inline) verdict and gets exactly one frontier verdict after FINAL.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from doubles.frontier_replay import Faults
from stack.workers import wait_until

pytestmark = pytest.mark.integration

N = 30
SCENARIOS = {
    "429-500": (Faults(rate_limit_fraction=0.5, server_error_fraction=0.5, retry_after_s=0.05),
                {"max_retries": 1}),
    "timeouts": (Faults(latency_ms=1500), {"max_retries": 1, "timeout_s": 0.3}),
    "budget": (Faults(latency_ms=5), {"max_retries": 0, "budget_usd": 0.05}),
}


def _replay_stats(settings) -> dict:
    url = settings.frontier.base_url.removesuffix("/v1") + "/stats"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_frontier_errors_retry_within_limits_then_record_the_give_up(fault_run, sample_traces, sample_gold):
    run = fault_run(routing={"threshold": 1.0, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    traces = sample_traces["pointwise"][:N]
    ids = sorted(t.trace_id for t in traces)
    frontiers = {}
    for name, (faults, limits) in SCENARIOS.items():
        settings = run.with_database(frontier=limits, kafka={"frontier_consumer_group": f"{name}-{run.run_id}"})
        frontiers[name] = run.replay(sample_gold, faults, settings)
    workers = [run.worker("inline", stub_ms=5, ready=False)]
    workers += [run.worker("frontier", settings=s, ready=False) for s in frontiers.values()]
    for w, s in zip(workers, [run.settings, *frontiers.values()]):
        run.wait_ready(w, s)

    run.send(traces)
    run.wait_accounted(N, timeout_s=60)
    assert run.count("SELECT countIf(route_reason = 'low_confidence') FROM {db}.verdicts FINAL") == N

    rows = {}
    for name, settings in frontiers.items():
        done = lambda s=settings: run.count("SELECT count() FROM {db}.frontier_verdicts FINAL", s) >= N  # noqa: E731
        assert wait_until(done, 120), f"{name}: not every routed trace got a frontier verdict"
        rows[name] = run.rows("SELECT trace_id, status, attempts, error, cost_usd FROM {db}.frontier_verdicts FINAL",
                              settings)
        assert sorted(r[0] for r in rows[name]) == ids, f"{name}: not one frontier verdict per trace"
    run.assert_each_once(traces, [])

    # 429 and 500: retried within max_retries, then a recorded give-up; the server saw exactly the attempts recorded
    rows_e = rows["429-500"]
    statuses = {s for _, s, *_ in rows_e}
    assert statuses == {"ok", "retries_exhausted"}, statuses
    assert all(1 <= a <= 2 for _, s, a, *_ in rows_e if s == "ok")
    given_up = [(a, e) for _, s, a, e, _ in rows_e if s == "retries_exhausted"]
    assert all(a == 2 and "gave up after 2 attempts" in e and ("RateLimitError" in e or "InternalServerError" in e)
               for a, e in given_up), given_up[:3]
    stats = _replay_stats(frontiers["429-500"])
    assert stats["requests"] == sum(a for _, _, a, *_ in rows_e)
    assert stats["injected_429"] > 0 and stats["injected_500"] > 0
    assert stats["answered"] == sum(1 for _, s, *_ in rows_e if s == "ok")

    # timeouts: every attempt timed out; 2 attempts each, recorded
    assert {(s, a) for _, s, a, *_ in rows["timeouts"]} == {("retries_exhausted", 2)}
    assert all("APITimeoutError" in e for *_, e, _ in rows["timeouts"]), rows["timeouts"][0]
    assert wait_until(lambda: _replay_stats(frontiers["timeouts"])["requests"] == 2 * N, 10)

    # budget: some judged, the rest refused before any call, spend within the budget
    rows_b = rows["budget"]
    assert {s for _, s, *_ in rows_b} == {"ok", "budget_exhausted"}
    assert all(a == 0 and "budget exhausted" in e for _, s, a, e, _ in rows_b if s == "budget_exhausted")
    assert 0 < sum(c for *_, c in rows_b) <= 0.05
    assert _replay_stats(frontiers["budget"])["requests"] == sum(1 for _, s, *_ in rows_b if s == "ok")


def test_a_redelivered_frontier_request_is_not_sent_to_the_frontier_again(fault_run, sample_traces, sample_gold):
    from operations.lag import committed_offsets

    run = fault_run(routing={"threshold": 1.0, "calibration_sample_rate": 0.0, "without_policy": "threshold"})
    traces = sample_traces["pointwise"][N:N + 10]
    settings = run.replay(sample_gold, Faults(latency_ms=5))
    workers = [run.worker("inline", stub_ms=5, ready=False), run.worker("frontier", settings=settings, ready=False)]
    for w in workers:
        run.wait_ready(w, settings)

    def requests_committed() -> int:
        offsets = committed_offsets(settings, settings.kafka.frontier_consumer_group,
                                    settings.kafka.topics.frontier_requests)
        return sum(o or 0 for o in offsets.values())

    run.send(traces)
    assert wait_until(lambda: run.count("SELECT count() FROM {db}.frontier_verdicts FINAL") == len(traces), 60)
    assert _replay_stats(settings)["requests"] == len(traces)
    run.send(traces)  # the same traces again: judged inline again, their frontier requests published again
    assert wait_until(lambda: requests_committed() == 2 * len(traces), 60), "the second requests were not consumed"
    assert _replay_stats(settings)["requests"] == len(traces), "a stored frontier verdict was asked for again"
    assert run.rows("SELECT count(), uniqExact(trace_id) FROM {db}.frontier_verdicts FINAL") == [(10, 10)]
    run.assert_each_once(traces, [], settle_s=0)
