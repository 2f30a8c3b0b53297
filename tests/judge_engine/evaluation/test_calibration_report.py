"""The calibration report's arithmetic: buckets, the stratified disagreement estimate, the threshold recommendation
and its edge cases (none qualifies, all qualify, empty and unobserved buckets), gold metrics and warnings."""

import math

import pytest

from judge_engine.evaluation.calibration_report import (
    ROUTE_ALL,
    JudgedRow,
    bucket_agreement,
    criterion_report,
    jsonable,
    recommend,
    threshold_curve,
    wilson_upper,
)


def rows_in(conf: float, traffic: int, observed: int, disagree: int, cost: float = 0.01) -> list[JudgedRow]:
    """``traffic`` pairwise verdicts at ``conf``, the first ``observed`` with a frontier verdict, ``disagree`` of
    those with a different label."""
    out = []
    for i in range(traffic):
        frontier = None if i >= observed else ("B" if i < disagree else "A")
        out.append(JudgedRow("A", conf, frontier, cost if frontier else None, 100 if frontier else None))
    return out


# traffic 20 at 0.3 (all routed, half disagree), 10 at 0.6 (all routed, 4 disagree), 100 at 0.9 (10 sampled, none)
ROWS = rows_in(0.3, 20, 20, 10) + rows_in(0.6, 10, 10, 4) + rows_in(0.9, 100, 10, 0)


def test_buckets_count_traffic_observed_and_disagreement():
    b = bucket_agreement(ROWS, n_buckets=4)
    assert [(x.lo, x.traffic, x.observed) for x in b] == [(0.0, 0, 0), (0.25, 20, 20), (0.5, 10, 10), (0.75, 100, 10)]
    assert math.isnan(b[0].disagreement_rate)
    assert [x.disagreement_rate for x in b[1:]] == [0.5, 0.4, 0.0]


def test_the_estimate_weights_each_bucket_by_its_traffic_not_by_how_often_it_was_sampled():
    points = threshold_curve(bucket_agreement(ROWS, n_buckets=4), calibration_sample_rate=0.1,
                             cost_per_trace_usd=0.01, tokens_per_trace=100)
    by_t = {p["threshold"]: p for p in points}
    assert list(by_t) == [0.0, 0.25, 0.5, 0.75, ROUTE_ALL]
    assert by_t[0.25]["estimated_disagreement"] == pytest.approx((20 * 0.5 + 10 * 0.4) / 130)
    # pooling the 20 observed verdicts at >= 0.5 would say 4/20 = 0.2; the traffic-weighted estimate is 4/110
    assert by_t[0.5]["estimated_disagreement"] == pytest.approx(4 / 110)
    assert by_t[0.5]["frontier_fraction"] == pytest.approx(20 / 130)
    assert by_t[0.5]["frontier_fraction_with_sample"] == pytest.approx((20 + 0.1 * 110) / 130)
    assert by_t[0.5]["frontier_traces"] == pytest.approx(31)
    assert by_t[0.5]["frontier_cost_usd"] == pytest.approx(0.31) and by_t[0.5]["frontier_tokens"] == pytest.approx(3100)
    assert by_t[0.5]["estimated_agreement_with_frontier"] == pytest.approx(1 - (4 / 110) * (110 / 130))
    assert by_t[ROUTE_ALL]["accepted"] == 0 and by_t[ROUTE_ALL]["frontier_fraction"] == 1.0

    assert recommend(points, 0.05)["threshold"] == 0.5
    assert recommend(points, 0.2)["threshold"] == 0.0  # nothing below 0.25: 0.0 accepts the same verdicts
    assert recommend(points, 4 / 110)["threshold"] == 0.5  # "at most" the accepted rate


def test_no_threshold_qualifies():
    rows = rows_in(0.6, 10, 10, 5) + rows_in(0.95, 10, 10, 5)
    report = criterion_report(rows, kind="pairwise", accepted_error_rate=0.1)
    assert report["recommendation"] is None
    assert any("no threshold keeps" in w for w in report["warnings"])


def test_every_threshold_qualifies_and_the_lowest_wins():
    report = criterion_report(rows_in(0.6, 10, 10, 0) + rows_in(0.95, 10, 2, 0), kind="pairwise",
                              accepted_error_rate=0.0, current_threshold=0.7)
    rec = report["recommendation"]
    assert rec["threshold"] == 0.0 and rec["frontier_fraction"] == 0.0 and rec["estimated_disagreement"] == 0.0
    assert report["current"]["threshold"] == pytest.approx(0.7) and report["current"]["frontier_fraction"] == 0.5


def test_a_bucket_without_frontier_verdicts_takes_the_others_rate_and_is_reported():
    rows = rows_in(0.6, 10, 10, 1) + rows_in(0.9, 30, 0, 0)
    points = threshold_curve(bucket_agreement(rows, n_buckets=10))
    at = {round(p["threshold"], 2): p for p in points}
    assert at[0.6]["estimated_disagreement"] == pytest.approx(0.1)
    assert at[0.6]["unobserved_share"] == pytest.approx(30 / 40)
    assert math.isnan(at[0.9]["estimated_disagreement"])  # nothing observed at or above 0.9
    assert recommend(points, 0.1)["threshold"] == 0.0


def test_no_frontier_verdict_and_no_rows_give_no_recommendation():
    unrouted = criterion_report(rows_in(0.8, 50, 0, 0), kind="pairwise", accepted_error_rate=0.1)
    assert unrouted["recommendation"] is None and unrouted["frontier_verdicts"] == 0
    assert any("no inline verdict has a frontier verdict" in w for w in unrouted["warnings"])
    empty = criterion_report([], kind="pointwise", accepted_error_rate=0.1)
    assert empty["recommendation"] is None and empty["verdicts"] == 0 and empty["agreement_by_bucket"] == []
    assert jsonable(empty)["frontier_vs_gold"]["tpr"] is None


def test_gold_metrics_and_the_warnings_of_a_small_set_and_a_weak_frontier():
    # 8 gold pass items, 2 gold fail: the frontier passes all 10 (TPR 1, TNR 0); inline gets 9 right
    rows = [JudgedRow("pass", 0.6, "pass", 0.002, 50, "pass", "low_confidence") for _ in range(8)]
    rows += [JudgedRow("fail", 0.6, "pass", 0.002, 50, "fail", "low_confidence"),
             JudgedRow("pass", 0.6, "pass", 0.002, 50, "fail", "low_confidence")]
    r = criterion_report(rows, kind="pointwise", accepted_error_rate=0.1)
    assert r["frontier_vs_gold"]["tpr"] == 1.0 and r["frontier_vs_gold"]["tnr"] == 0.0
    assert r["inline_vs_gold"]["accuracy"] == 0.9
    # kappa of inline vs gold by hand: po = 0.9, pe = (9*8 + 1*2) / 100 = 0.74
    assert r["inline_vs_gold"]["kappa"] == pytest.approx((0.9 - 0.74) / (1 - 0.74))
    assert r["frontier_verdicts_by_reason"] == {"low_confidence": 10}
    warnings = " | ".join(r["warnings"])
    assert "only 10 gold items" in warnings and "TNR" in warnings and "TPR" not in warnings
    assert r["frontier_cost_per_trace_usd"] == pytest.approx(0.002)


def test_a_recommendation_on_few_frontier_verdicts_is_flagged_with_its_upper_bound():
    thin = criterion_report(rows_in(0.6, 50, 50, 25) + rows_in(0.95, 100, 7, 0), kind="pairwise",
                            accepted_error_rate=0.05)
    rec = thin["recommendation"]
    assert rec["threshold"] == pytest.approx(0.65) and rec["observed_in_accepted"] == 7  # the next edge above 0.6
    # Wilson upper bound of 0 successes in 7: z^2 / (n + z^2)
    assert rec["disagreement_upper_95"] == pytest.approx(1.96 ** 2 / (7 + 1.96 ** 2))
    assert any("rests on only 7 frontier verdicts" in w for w in thin["warnings"])
    solid = criterion_report(rows_in(0.6, 50, 50, 25) + rows_in(0.95, 100, 40, 0), kind="pairwise",
                             accepted_error_rate=0.05)
    assert not any("rests on only" in w for w in solid["warnings"])
    assert wilson_upper(0.5, 0) != wilson_upper(0.5, 0)  # NaN without items
