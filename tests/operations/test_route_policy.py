"""The routing controller on the real store: evidence read from ClickHouse (inline verdicts joined with frontier
verdicts, the calibration sample weighted by 1/rate), a fitted policy stored with its evidence and handed to the
publisher, nothing republished when nothing changed, and a drift alarm stored and acted on at once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from judge_engine.online.policy import RoutingPolicy, Segment
from operations.route_policy import drift_check, latest_policy, update
from schemas.verdict import FrontierVerdict, Verdict
from streams.sink import ClickHouseStore

pytestmark = pytest.mark.integration

SEGMENT = Segment("default", "support", "pointwise", "overall")  # the fine segment: its own rule


def verdict(i: int, confidence: float, reason: str | None, rate: float, at: datetime) -> Verdict:
    return Verdict(trace_id=f"tr-{i}", app="support", kind="pointwise", criterion="overall", label="pass",
                   score=confidence, confidence=confidence, judge_name="judge", judge_version="7", latency_ms=3.0,
                   route_reason=reason, policy_version=0, route_threshold=0.7, sample_rate=rate, trace_time=at,
                   judged_at=at)


def frontier(v: Verdict, label: str, at: datetime) -> FrontierVerdict:
    return FrontierVerdict(trace_id=v.trace_id, app=v.app, kind=v.kind, criterion=v.criterion, judge_name="gpt-4",
                           label=label, request_reason=v.route_reason or "low_confidence", inline_label=v.label,
                           inline_judge_version=v.judge_version, trace_time=v.trace_time, judged_at=at)


def test_update_fits_stores_publishes_and_tightens_a_drifting_segment_at_once(store):
    client, base = store
    settings = base.model_copy(update={"routing": base.routing.model_copy(update={
        "min_evidence": 20, "accepted_error_rate": 0.1, "calibration_sample_rate": 0.05, "max_sample_rate": 0.3,
        "drift_h": 4.0})})
    sink = ClickHouseStore(settings, client=client)
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    # 60 low-confidence traces (census, half of them wrong) and 60 confident ones from a 50 % calibration sample
    low = [verdict(i, 0.4, "low_confidence", 0.5, t0 + timedelta(seconds=i)) for i in range(60)]
    high = [verdict(100 + i, 0.9, "calibration_sample", 0.5, t0 + timedelta(seconds=i)) for i in range(60)]
    unrouted = [verdict(500 + i, 0.95, None, 0.5, t0 + timedelta(seconds=i)) for i in range(30)]
    sink.insert_sync("verdicts", low + high + unrouted)
    sink.insert_sync("frontier_verdicts", [frontier(v, "fail" if i % 2 else "pass", t0 + timedelta(minutes=5))
                                          for i, v in enumerate(low)]
                     + [frontier(v, "pass", t0 + timedelta(minutes=5)) for v in high])
    published: list[RoutingPolicy] = []

    now1 = t0 + timedelta(minutes=30)
    first = update(settings, client=client, publish=lambda _s, p: published.append(p), now=now1)
    assert first.published and first.evidence == 120 and first.judge_version == "7" and first.alarms == []
    rule = first.policy.rule_for(SEGMENT)
    assert rule.segment == SEGMENT and not rule.route_all and rule.threshold == pytest.approx(0.45)
    assert rule.evidence["n"] == 120 and rule.evidence["n_eff"] < 120  # weights 2 on the sample: n_eff < n
    assert first.policy.rule_for(Segment("default", "other-app", "pointwise", "overall")).routes_everything
    assert [p.version for p in published] == [1]
    rows = client.query(f"SELECT version, scope, reason, judge_version, rules, policy, evidence "
                        f"FROM {settings.clickhouse.database}.routing_policies FINAL").result_rows
    assert len(rows) == 1 and rows[0][:5] == (1, "default", "scheduled", "7", len(first.policy.rules))
    assert RoutingPolicy.from_json(rows[0][5]) == first.policy
    assert any(e["segment"] == str(SEGMENT) and e["n"] == 120 for e in json.loads(rows[0][6]))
    assert latest_policy(client, settings) == first.policy

    # nothing new: the same rules are not published again
    again = update(settings, client=client, publish=lambda _s, p: published.append(p), now=now1 + timedelta(minutes=1))
    assert not again.published and again.policy.version == 1 and len(published) == 1

    # the confidence curve breaks: confident traces the frontier now contradicts, arriving after policy 1
    broken = [verdict(1000 + i, 0.9, "calibration_sample", 0.3, now1 + timedelta(seconds=10 + i)) for i in range(40)]
    sink.insert_sync("verdicts", broken)
    sink.insert_sync("frontier_verdicts", [frontier(v, "fail", now1 + timedelta(minutes=2)) for v in broken])
    now2 = now1 + timedelta(minutes=3)
    # between scheduled re-fits, the watcher's drift test alone already sees it (and `watch` then updates at once)
    assert [str(a.segment) for a in drift_check(settings, client, now=now2)] == [str(SEGMENT)]
    third = update(settings, client=client, publish=lambda _s, p: published.append(p), now=now2)
    assert third.published and [str(a.segment) for a in third.alarms] == [str(SEGMENT)]
    assert third.alarms[0].observations < 40  # caught within tens of checked traces
    tightened = third.policy.rule_for(SEGMENT)
    assert tightened.routes_everything and third.policy.version == 2 and published[-1] == third.policy
    alarms = client.query(f"SELECT segment, policy_version, action, statistic >= threshold, observations "
                          f"FROM {settings.clickhouse.database}.drift_alarms FINAL").result_rows
    assert alarms == [(str(SEGMENT), 1, "tightened", True, third.alarms[0].observations)]
    reasons = client.query(f"SELECT version, reason FROM {settings.clickhouse.database}.routing_policies FINAL "
                           "ORDER BY version").result_rows
    assert reasons == [(1, "scheduled"), (2, "drift")]


def test_update_starts_from_the_served_versions_validation_evidence_for_its_own_apps_only(store, tmp_path):
    client, base = store
    repository = tmp_path / "models"
    settings = base.model_copy(update={
        "routing": base.routing.model_copy(update={"min_evidence": 50, "accepted_error_rate": 0.1}),
        "stack": base.stack.model_copy(update={"model_repository": repository})})
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    ClickHouseStore(settings, client=client).insert_sync("verdicts", [verdict(0, 0.9, None, 0.05, t0)])
    published: list[RoutingPolicy] = []

    without = update(settings, client=client, publish=lambda _s, p: published.append(p), now=t0 + timedelta(minutes=1))
    assert without.policy.rule_for(SEGMENT).routes_everything  # one live verdict: not enough for any threshold

    version_dir = repository / settings.triton.model_name / "7"
    version_dir.mkdir(parents=True)
    rows = ([{"app": "support", "kind": "pointwise", "criterion": "overall", "label": "pass", "confidence": 0.95,
              "reference": "pass", "reference_source": "teacher:gpt-4"}] * 150
            + [{"app": "support", "kind": "pointwise", "criterion": "overall", "label": "pass", "confidence": 0.3,
                "reference": "fail" if i % 2 else "pass", "reference_source": "teacher:gpt-4"} for i in range(60)])
    (version_dir / "student.json").write_text(json.dumps({"validation_evidence": rows}))
    started = update(settings, client=client, publish=lambda _s, p: published.append(p),
                     now=t0 + timedelta(minutes=2))
    rule = started.policy.rule_for(SEGMENT)
    assert started.published and not rule.route_all and 0.3 < rule.threshold <= 0.95
    assert started.policy.rule_for(Segment("default", "other-app", "pointwise", "overall")).routes_everything


def test_watch_updates_at_once_when_the_drift_check_alarms_between_scheduled_updates(monkeypatch):
    import threading
    import time

    import operations.route_policy as rp
    from conftest import make_settings

    updates: list[float] = []
    checks: list[float] = []
    stop = threading.Event()
    started = time.monotonic()
    monkeypatch.setattr(rp, "update", lambda _s: updates.append(time.monotonic() - started))
    # the third drift test alarms; the scheduled re-fit would come only after an hour
    monkeypatch.setattr(rp, "drift_check", lambda _s: checks.append(1) or (["alarm"] if len(checks) == 3 else []))
    worker = threading.Thread(target=rp.watch, args=(make_settings(), 3600.0, stop), kwargs={"drift_every_s": 0.05})
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while len(updates) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(5)
    assert len(updates) == 2 and updates[1] < 5 and len(checks) >= 3  # the alarm's update, not the hourly one
    assert not worker.is_alive()
