"""The shadow comparison of `judgeline report`: the figures per candidate version from hand-made rows in the real
store (agreement with the live verdicts, each judge against the frontier and the gold labels on the traces both
judged, confidence, share below the threshold, latency), merged across kinds, and shown apart from the verdicts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from operations import report
from operations.analytics import Analytics, Window
from schemas import FrontierVerdict, GoldLabel, Verdict
from schemas.shadow import ShadowVerdict
from streams.sink import ClickHouseStore

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def test_the_summary_merges_kinds_weighting_each_rate_by_its_traces():
    rows = [
        {"candidate_version": "2", "live_version": "1", "kind": "pairwise", "shadowed": 4, "both_judged": 4,
         "agreement_with_live": 0.5, "with_frontier": 2, "candidate_vs_frontier": 1.0, "live_vs_frontier": 0.5,
         "with_gold": 0, "candidate_vs_gold": None, "live_vs_gold": None, "candidate_below_threshold": 0.25,
         "live_below_threshold": 0.5},
        {"candidate_version": "2", "live_version": "1", "kind": "pointwise", "shadowed": 7, "both_judged": 6,
         "agreement_with_live": 1.0, "with_frontier": 0, "candidate_vs_frontier": None, "live_vs_frontier": None,
         "with_gold": 3, "candidate_vs_gold": 2 / 3, "live_vs_gold": 1 / 3, "candidate_below_threshold": 0.0,
         "live_below_threshold": float("nan")},
    ]
    (summary,) = report.shadow_summary(rows)
    assert (summary["shadowed"], summary["both_judged"], summary["with_frontier"], summary["with_gold"]) == (11, 10, 2, 3)
    assert summary["agreement_with_live"] == pytest.approx((0.5 * 4 + 1.0 * 6) / 10)
    assert (summary["candidate_vs_frontier"], summary["live_vs_frontier"]) == (1.0, 0.5)
    assert summary["candidate_vs_gold"] == pytest.approx(2 / 3) and summary["live_vs_gold"] == pytest.approx(1 / 3)
    assert summary["candidate_below_threshold"] == pytest.approx(0.1) and summary["live_below_threshold"] == 0.5
    name, value, detail = report.shadow_headline(rows)
    assert (name, value) == ("shadow candidates", "v2: 80.0% agree")
    assert "11 traces shadowed beside live v1" in detail and "vs frontier 100.0% (live 50.0%, n=2)" in detail
    assert report.shadow_headline([])[1] == "none"


def _row(i: int, kind: str, label: str, live: str | None, confidence: float, live_confidence: float | None,
         latency: float, version: str = "2") -> ShadowVerdict:
    return ShadowVerdict(trace_id=f"g{i}", kind=kind, criterion="overall", label=label, score=0.5,
                         confidence=confidence, judge_name="judge_shadow", judge_version=version, latency_ms=latency,
                         live_judge_version="1" if live else None, live_label=live, live_confidence=live_confidence,
                         live_latency_ms=latency / 2 if live else None, trace_time=T0)


@pytest.mark.integration
def test_the_report_compares_each_candidate_with_the_live_judge_from_the_store(store, tmp_path):
    client, settings = store
    sink = ClickHouseStore(settings, client=client)
    shadow = [
        _row(0, "pointwise", "pass", "pass", 0.9, 0.8, 10),   # agree; gold pass: both right
        _row(1, "pointwise", "fail", "pass", 0.6, 0.9, 20),   # disagree; frontier fail: candidate right
        _row(2, "pointwise", "pass", "pass", 0.95, 0.5, 30),  # agree; gold fail: both wrong; live below threshold
        _row(3, "pointwise", "pass", "fail", 0.5, 0.9, 40),   # disagree; frontier fail and gold fail: live right
        _row(4, "pointwise", "pass", None, 0.9, None, 50),    # no live verdict: shadowed, compared with nothing
        _row(5, "pairwise", "A", "B", 0.9, 0.9, 60),          # another kind
    ]
    sink.insert_sync("shadow_verdicts", shadow)
    sink.insert_sync("shadow_verdicts", shadow[:2])  # a redelivery: counted once
    frontier = [FrontierVerdict(trace_id=f"g{i}", kind="pointwise", criterion="overall", judge_name="gpt-4",
                                label="fail", request_reason="low_confidence", trace_time=T0) for i in (1, 3)]
    sink.insert_sync("frontier_verdicts", frontier)
    gold = [GoldLabel(id=f"g{i}", source="s", kind="pointwise", criterion="overall", question="q?", answer="a.",
                      human_label=label) for i, label in ((0, "pass"), (2, "fail"), (3, "fail"))]
    sink.insert_sync("gold_labels", gold)
    # one live verdict, so the headline's count of verdicts is visibly not the shadow rows'
    sink.insert_sync("verdicts", [Verdict(trace_id="g0", kind="pointwise", criterion="overall", label="pass",
                                          score=0.8, confidence=0.8, judge_name="judge", judge_version="1",
                                          latency_ms=5, trace_time=T0)])

    results = Analytics(client, settings.clickhouse.database, Window(), threshold=0.7).report()
    by_kind = {r["kind"]: r for r in results["shadow"]}
    point = by_kind["pointwise"]
    assert (point["candidate_version"], point["live_version"]) == ("2", "1")
    assert (point["shadowed"], point["both_judged"], point["with_frontier"], point["with_gold"]) == (4, 4, 2, 3)
    assert point["agreement_with_live"] == pytest.approx(0.5)
    assert (point["candidate_vs_frontier"], point["live_vs_frontier"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert point["candidate_vs_gold"] == pytest.approx(1 / 3) and point["live_vs_gold"] == pytest.approx(2 / 3)
    assert point["candidate_confidence"] == pytest.approx((0.9 + 0.6 + 0.95 + 0.5) / 4, abs=1e-6)
    assert point["live_confidence"] == pytest.approx((0.8 + 0.9 + 0.5 + 0.9) / 4, abs=1e-6)
    assert point["candidate_below_threshold"] == pytest.approx(0.5)  # 0.6 and 0.5
    assert point["live_below_threshold"] == pytest.approx(0.25)  # 0.5
    assert point["candidate_latency_p50_ms"] == pytest.approx(30)  # quantileExact of 10..50: the upper median
    no_live = [r for r in results["shadow"] if r["live_version"] == ""]
    assert no_live and no_live[0]["shadowed"] == 1 and no_live[0]["agreement_with_live"] is None
    assert by_kind["pairwise"]["agreement_with_live"] == 0

    figures = {name: (value, detail) for name, value, detail in report.headline(results)}
    assert figures["verdicts"][0] == "1"  # shadow rows are never counted as verdicts
    assert figures["shadow candidates"][0] == "v2: 40.0% agree"  # 2 of the 5 traces both judged
    text = report.text_tables(results)
    assert "== Shadow candidates" in text and "agreement_with_live" in text
    page = report.write_html(results, tmp_path, "all traces").read_text()
    assert "<h2 id='shadow'>Shadow candidates</h2>" in page and "shadow_verdicts_latest" in page
