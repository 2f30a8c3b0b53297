"""judge_engine.evaluation.metrics: hand-worked cases, independent reimplementations, properties, NaN cases and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from judge_engine.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    AgreementReport,
    accuracy,
    agreement,
    cascade_curve,
    cohen_kappa,
    count_scored,
    expected_calibration_error,
    macro_f1,
    reliability_bins,
    swap_back,
    swap_consistency,
    tpr_tnr,
)
from schemas.base import LABELS_BY_KIND

PAIRWISE = LABELS_BY_KIND["pairwise"]
POINTWISE = LABELS_BY_KIND["pointwise"]

PROPERTY = settings(deadline=None, max_examples=100)  # no deadline: CI machines are shared and slow

pairwise_labels = st.sampled_from(PAIRWISE)
pointwise_labels = st.sampled_from(POINTWISE)
confidences = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def label_pairs(labels=pairwise_labels, min_size: int = 0, max_size: int = 40):
    """Two equally long label lists."""
    return st.integers(min_value=min_size, max_value=max_size).flatmap(
        lambda n: st.tuples(st.lists(labels, min_size=n, max_size=n), st.lists(labels, min_size=n, max_size=n))
    )


# --- independent reimplementations (numpy, textbook formulas) ---------------------------------------------------------


def confusion(pred, truth, labels) -> np.ndarray:
    """rows: truth, columns: pred."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)))
    np.add.at(matrix, ([index[t] for t in truth], [index[p] for p in pred]), 1)
    return matrix


def numpy_kappa(pred, truth, labels) -> float:
    m = confusion(pred, truth, labels)
    n = m.sum()
    po = np.trace(m) / n
    pe = float(m.sum(axis=1) @ m.sum(axis=0)) / n**2
    return math.nan if math.isclose(pe, 1.0) else (po - pe) / (1 - pe)


def numpy_macro_f1(pred, truth, labels) -> float:
    """Harmonic mean of precision and recall per label (0 when both are 0); labels seen on neither side skipped."""
    m = confusion(pred, truth, labels)
    scores = []
    for i in range(len(labels)):
        tp, predicted, actual = m[i, i], m[:, i].sum(), m[i, :].sum()
        if predicted == 0 and actual == 0:
            continue
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        scores.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores)) if scores else math.nan


def numpy_ece(conf, correct, n_bins) -> float:
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    edges = np.array([i / n_bins for i in range(n_bins + 1)])
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return total


# --- accuracy ---------------------------------------------------------------------------------------------------------


def test_accuracy_hand_case_and_missing_labels_excluded():
    assert accuracy(["A", "B", "tie", "A"], ["A", "A", "tie", "B"]) == 0.5
    # The None reference (index 1) and the None prediction (index 3) are left out: 2 of the 3 scored items agree.
    pred = ["A", "B", "tie", None, "B"]
    truth = ["A", None, "tie", "A", "A"]
    assert accuracy(pred, truth) == pytest.approx(2 / 3)
    assert count_scored(pred, truth) == 3


def test_accuracy_nan_when_nothing_is_scored():
    assert math.isnan(accuracy([], []))
    assert math.isnan(accuracy(["A", "B"], [None, None]))
    assert count_scored(["A", "B"], [None, None]) == 0


@PROPERTY
@given(label_pairs(min_size=1))
def test_accuracy_is_a_fraction_matching_numpy(pair):
    pred, truth = pair
    value = accuracy(pred, truth)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(np.mean(np.array(pred) == np.array(truth)))


# --- macro-F1 ---------------------------------------------------------------------------------------------------------


def test_macro_f1_hand_case():
    pred = ["A", "A", "B", "tie"]
    truth = ["A", "B", "B", "B"]
    # A: TP 1, FP 1, FN 0 -> 2/3;  B: TP 1, FP 0, FN 2 -> 2/4;  tie: TP 0, FP 1, FN 0 -> 0.  Mean = 7/18.
    assert macro_f1(pred, truth, PAIRWISE) == pytest.approx(7 / 18)


def test_macro_f1_skips_a_label_absent_from_both_sides():
    pred = ["A", "B", "B", "A"]
    truth = ["A", "B", "A", "A"]
    # tie never occurs: mean over A (TP 2, FP 0, FN 1 -> 4/5) and B (TP 1, FP 1, FN 0 -> 2/3), not over three.
    assert macro_f1(pred, truth, PAIRWISE) == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert macro_f1(["A", "B"], ["A", "B"], PAIRWISE) == 1.0


def test_macro_f1_nan_when_no_label_occurs():
    assert math.isnan(macro_f1([], [], PAIRWISE))
    assert math.isnan(macro_f1([None], ["A"], PAIRWISE))


@PROPERTY
@given(label_pairs(min_size=1))
def test_macro_f1_matches_precision_recall_formula(pair):
    pred, truth = pair
    value = macro_f1(pred, truth, PAIRWISE)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(numpy_macro_f1(pred, truth, PAIRWISE))


def test_macro_f1_matches_sklearn_where_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    pred = ["A", "A", "B", "tie", "B", "A", "tie", "tie"]
    truth = ["A", "B", "B", "B", "tie", "A", "A", "tie"]
    expected = metrics.f1_score(truth, pred, labels=list(PAIRWISE), average="macro", zero_division=0)
    assert macro_f1(pred, truth, PAIRWISE) == pytest.approx(expected)


# --- Cohen's kappa ----------------------------------------------------------------------------------------------------


def test_kappa_known_2x2_example():
    # 50 items: both pass 20, judge pass / human fail 5, judge fail / human pass 10, both fail 15.
    # po = 35/50 = 0.7; judge passes 25/50, human passes 30/50: pe = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4.
    pred = ["pass"] * 20 + ["pass"] * 5 + ["fail"] * 10 + ["fail"] * 15
    truth = ["pass"] * 20 + ["fail"] * 5 + ["pass"] * 10 + ["fail"] * 15
    assert cohen_kappa(pred, truth, POINTWISE) == pytest.approx(0.4)


def test_kappa_chance_level_and_full_disagreement():
    # A judge that always says pass agrees only by chance: po = pe = 0.5, kappa 0.
    assert cohen_kappa(["pass"] * 4, ["pass", "fail", "pass", "fail"], POINTWISE) == pytest.approx(0.0)
    # Always the opposite, balanced: po = 0, pe = 0.5, kappa -1.
    assert cohen_kappa(["pass", "fail"], ["fail", "pass"], POINTWISE) == pytest.approx(-1.0)


def test_kappa_nan_when_expected_agreement_is_one_or_empty():
    assert math.isnan(cohen_kappa(["A", "A", "A"], ["A", "A", "A"], PAIRWISE))
    assert math.isnan(cohen_kappa([], [], PAIRWISE))
    assert math.isnan(cohen_kappa(["A", None], [None, "B"], PAIRWISE))


def test_kappa_ignores_missing_reference():
    pred = ["pass", "fail", "pass", "fail"]
    truth = ["pass", "fail", None, "pass"]
    # Scored: (pass, pass), (fail, fail), (fail, pass): po = 2/3, pe = (1/3)(2/3) + (2/3)(1/3) = 4/9, kappa = 0.4.
    assert cohen_kappa(pred, truth, POINTWISE) == pytest.approx(0.4)


@PROPERTY
@given(label_pairs(min_size=1))
def test_kappa_matches_numpy_formula(pair):
    pred, truth = pair
    value, expected = cohen_kappa(pred, truth, PAIRWISE), numpy_kappa(pred, truth, PAIRWISE)
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected)
        assert -1.0 <= value <= 1.0


@PROPERTY
@given(st.lists(pairwise_labels, min_size=2, max_size=40))
def test_kappa_of_a_sequence_with_itself_is_one(labels):
    assume(len(set(labels)) > 1)
    assert cohen_kappa(labels, labels, PAIRWISE) == 1.0


def test_kappa_matches_sklearn_where_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    pred = ["A", "A", "B", "tie", "B", "A", "tie", "tie", "B"]
    truth = ["A", "B", "B", "B", "tie", "A", "A", "tie", "B"]
    assert cohen_kappa(pred, truth, PAIRWISE) == pytest.approx(metrics.cohen_kappa_score(pred, truth))


# --- TPR / TNR --------------------------------------------------------------------------------------------------------


def test_tpr_tnr_hand_case_positive_is_pass():
    truth = ["pass", "pass", "pass", "fail", "fail"]
    pred = ["pass", "fail", "pass", "fail", "pass"]
    # 2 of the 3 reference passes are passed, 1 of the 2 reference fails is failed.
    assert tpr_tnr(pred, truth) == pytest.approx((2 / 3, 1 / 2))
    assert tpr_tnr(pred, truth, positive="fail", negative="pass") == pytest.approx((1 / 2, 2 / 3))


def test_tpr_tnr_nan_without_a_class_in_the_truth():
    tpr, tnr = tpr_tnr(["pass", "fail"], ["fail", "fail"])
    assert math.isnan(tpr) and tnr == 0.5
    tpr, tnr = tpr_tnr(["pass", None], ["pass", "fail"])
    assert tpr == 1.0 and math.isnan(tnr)


# --- swap consistency -------------------------------------------------------------------------------------------------


def test_swap_back_and_consistency_hand_case():
    # Swapped order shows B first, so a consistent judge says the opposite letter there.
    original = ["A", "B", "tie", "A", "B"]
    swapped = ["B", "A", "tie", "A", None]
    mapped = swap_back(swapped)
    assert mapped == ["A", "B", "tie", "B", None]
    # Item 4 flipped with the position (position bias), item 5 has no swapped verdict: 3 of 4 consistent.
    assert swap_consistency(original, mapped) == pytest.approx(3 / 4)
    assert swap_back(["pass", "fail"]) == ["pass", "fail"]


def test_swap_consistency_nan_when_empty():
    assert math.isnan(swap_consistency([], []))
    assert math.isnan(swap_consistency([None], ["A"]))


@PROPERTY
@given(st.lists(pairwise_labels, min_size=1, max_size=40))
def test_swap_consistency_of_identical_sequences_is_one(labels):
    assert swap_consistency(labels, list(labels)) == 1.0
    assert swap_back(swap_back(labels)) == labels


@PROPERTY
@given(label_pairs(min_size=1))
def test_swap_consistency_is_the_agreement_fraction(pair):
    ab, ba = pair
    assert swap_consistency(ab, ba) == pytest.approx(np.mean(np.array(ab) == np.array(ba)))


# --- calibration ------------------------------------------------------------------------------------------------------


def test_ece_hand_worked():
    conf = [0.1, 0.15, 0.8, 0.85, 0.95]
    correct = [False, True, True, True, False]
    # Two bins, [0, 0.5) and [0.5, 1]:
    #   low:  0.1, 0.15       -> mean conf 0.125,  accuracy 1/2 -> |0.5 - 0.125| = 0.375, weight 2/5 -> 0.15
    #   high: 0.8, 0.85, 0.95 -> mean conf 2.6/3,  accuracy 2/3 -> |2/3 - 2.6/3| = 0.2,  weight 3/5 -> 0.12
    # ECE = 0.27
    assert expected_calibration_error(conf, correct, n_bins=2) == pytest.approx(0.27)


def test_ece_zero_when_perfectly_calibrated_and_one_when_maximally_wrong():
    conf = [0.25] * 4 + [1.0] * 3
    correct = [True, False, False, False] + [True] * 3
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 0.0], [False, True]) == pytest.approx(1.0)


def test_reliability_bins_edges_and_contents():
    conf = [0.0, 0.2, 0.25, 0.5, 0.99, 1.0]
    correct = [False, True, False, True, True, None]  # the last item has no correctness: excluded
    bins = reliability_bins(conf, correct, n_bins=4)
    assert [(b["lo"], b["hi"]) for b in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [b["count"] for b in bins] == [2, 1, 1, 1]  # 0.25 and 0.5 open the next bin; 1.0 would be in the last
    assert bins[0]["mean_confidence"] == pytest.approx(0.1) and bins[0]["accuracy"] == 0.5
    assert bins[1]["mean_confidence"] == 0.25 and bins[1]["accuracy"] == 0.0
    assert bins[3]["mean_confidence"] == 0.99 and bins[3]["accuracy"] == 1.0
    top = reliability_bins([1.0], [True], n_bins=4)
    assert [b["count"] for b in top] == [0, 0, 0, 1]


def test_reliability_empty_bins_and_ece_empty_input_are_nan():
    bins = reliability_bins([0.05], [True], n_bins=10)
    assert len(bins) == 10 and bins[0]["count"] == 1
    for b in bins[1:]:
        assert b["count"] == 0 and math.isnan(b["mean_confidence"]) and math.isnan(b["accuracy"])
    assert math.isnan(expected_calibration_error([], []))
    assert math.isnan(expected_calibration_error([0.5, None], [None, True]))


calibration_sets = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(confidences, min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n)
    )
)


@PROPERTY
@given(calibration_sets, st.integers(min_value=1, max_value=15))
def test_ece_matches_numpy_reimplementation(data, n_bins):
    conf, correct = data
    value = expected_calibration_error(conf, correct, n_bins=n_bins)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(numpy_ece(conf, correct, n_bins), abs=1e-12)


@PROPERTY
@given(calibration_sets, st.integers(min_value=1, max_value=15))
def test_reliability_bins_match_scipy_binned_statistic(data, n_bins):
    stats = pytest.importorskip("scipy.stats")
    conf, correct = data
    bins = reliability_bins(conf, correct, n_bins=n_bins)
    edges = [i / n_bins for i in range(n_bins + 1)]
    counts = stats.binned_statistic(conf, correct, statistic="count", bins=edges).statistic
    means = stats.binned_statistic(conf, conf, statistic="mean", bins=edges).statistic
    accs = stats.binned_statistic(conf, np.asarray(correct, dtype=float), statistic="mean", bins=edges).statistic
    assert [b["count"] for b in bins] == counts.astype(int).tolist()
    np.testing.assert_allclose([b["mean_confidence"] for b in bins], means, equal_nan=True, rtol=1e-12)
    np.testing.assert_allclose([b["accuracy"] for b in bins], accs, equal_nan=True, rtol=1e-12)


# --- cascade ----------------------------------------------------------------------------------------------------------

CASCADE = {
    "inline_label": ["pass", "pass", "fail", "fail", "fail"],
    "inline_confidence": [0.9, 0.3, 0.6, 0.1, 0.0],
    "frontier_label": ["pass", "fail", None, "pass", "pass"],
    "human_label": ["pass", "fail", "pass", "pass", None],  # the last item has no human label: excluded
}


def test_cascade_hand_case():
    points = cascade_curve(**CASCADE, thresholds=[0.0, 0.2, 0.5, 0.6, 0.7, 1.0001])
    got = [(p["threshold"], p["frontier_fraction"], p["unanswered_fraction"], p["accuracy_vs_human"]) for p in points]
    assert got == (  # quarters are exact in binary floating point
        [
            (0.0, 0.0, 0.0, 0.25),  # inline alone: only item 1 right
            (0.2, 0.25, 0.0, 0.5),  # item 4 (0.1) routed, frontier says pass: right
            (0.5, 0.5, 0.0, 0.75),  # item 2 (0.3) routed, frontier says fail: right
            (0.6, 0.5, 0.0, 0.75),  # 0.6 < 0.6 is false: item 3 not routed yet
            (0.7, 0.75, 0.25, 0.75),  # item 3 routed but no teacher verdict: inline fail stands, counted unanswered
            (1.0001, 1.0, 0.25, 0.75),  # everything routed; item 1's frontier verdict is also right
        ]
    )
    assert all(p["n"] == 4 for p in points)


def test_cascade_default_thresholds():
    assert len(DEFAULT_THRESHOLDS) == 22
    assert DEFAULT_THRESHOLDS[0] == 0.0 and DEFAULT_THRESHOLDS[-2] == 1.0 and DEFAULT_THRESHOLDS[-1] == 1.0001
    assert np.allclose(np.diff(DEFAULT_THRESHOLDS[:-1]), 0.05)
    points = cascade_curve(**CASCADE)
    assert [p["threshold"] for p in points] == list(DEFAULT_THRESHOLDS)
    assert points[0]["frontier_fraction"] == 0.0
    assert points[0]["accuracy_vs_human"] == accuracy(CASCADE["inline_label"], CASCADE["human_label"])
    assert points[-1]["frontier_fraction"] == 1.0  # 1.0001 routes even a confidence of exactly 1
    assert cascade_curve(["pass"], [1.0], ["fail"], ["fail"])[-1]["accuracy_vs_human"] == 1.0


def test_cascade_nan_without_scored_items():
    (point,) = cascade_curve(["pass"], [0.5], ["pass"], [None], thresholds=[0.7])
    assert point["n"] == 0
    assert math.isnan(point["frontier_fraction"]) and math.isnan(point["accuracy_vs_human"])
    assert math.isnan(point["unanswered_fraction"])


def test_cascade_routed_item_without_teacher_label_keeps_its_inline_verdict():
    (point,) = cascade_curve(["pass", "fail"], [0.2, 0.9], [None, "pass"], ["pass", "pass"], thresholds=[0.5])
    # Item 1 is routed, nobody answered it, its (right) inline pass stands; item 2 is not routed and stays wrong.
    assert (point["frontier_fraction"], point["unanswered_fraction"], point["accuracy_vs_human"]) == (0.5, 0.5, 0.5)


cascade_sets = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(pointwise_labels, min_size=n, max_size=n),
        st.lists(confidences, min_size=n, max_size=n),
        st.lists(st.none() | pointwise_labels, min_size=n, max_size=n),
        st.lists(pointwise_labels, min_size=n, max_size=n),
    )
)


@PROPERTY
@given(cascade_sets, st.lists(st.floats(min_value=0.0, max_value=1.5, allow_nan=False), min_size=2, max_size=10))
def test_cascade_frontier_fraction_non_decreasing_in_threshold(data, thresholds):
    inline, conf, frontier, human = data
    points = cascade_curve(inline, conf, frontier, human, thresholds=sorted(thresholds))
    fractions = [p["frontier_fraction"] for p in points]
    assert fractions == sorted(fractions)
    for p in points:
        assert 0.0 <= p["unanswered_fraction"] <= p["frontier_fraction"] <= 1.0
        assert 0.0 <= p["accuracy_vs_human"] <= 1.0


@PROPERTY
@given(cascade_sets)
def test_cascade_threshold_zero_is_inline_accuracy(data):
    inline, conf, frontier, human = data
    (point,) = cascade_curve(inline, conf, frontier, human, thresholds=[0.0])
    assert point["frontier_fraction"] == 0.0
    assert point["accuracy_vs_human"] == pytest.approx(accuracy(inline, human))


@PROPERTY
@given(cascade_sets)
def test_cascade_without_any_teacher_label_is_the_inline_judge(data):
    inline, conf, _, human = data
    for point in cascade_curve(inline, conf, [None] * len(inline), human):
        assert point["unanswered_fraction"] == point["frontier_fraction"]
        assert point["accuracy_vs_human"] == pytest.approx(accuracy(inline, human))


@PROPERTY
@given(cascade_sets)
def test_cascade_perfect_frontier_above_every_confidence_is_exact(data):
    inline, conf, _, human = data
    above = float(np.nextafter(max(conf), 2.0))  # the smallest threshold that routes every item
    (point,) = cascade_curve(inline, conf, list(human), human, thresholds=[above])
    assert point["frontier_fraction"] == 1.0
    assert point["unanswered_fraction"] == 0.0
    assert point["accuracy_vs_human"] == 1.0


# --- agreement bundle -------------------------------------------------------------------------------------------------


def test_agreement_pointwise_bundle():
    pred = ["pass", "pass", "fail", "fail", "pass", None]
    truth = ["pass", "fail", "fail", "pass", None, "pass"]
    report = agreement(pred, truth, "pointwise")
    assert isinstance(report, AgreementReport)
    assert (report.kind, report.n, report.n_excluded) == ("pointwise", 4, 2)
    assert report.accuracy == 0.5
    assert report.kappa == pytest.approx(0.0)  # 2x2 with one of each cell: chance agreement
    assert report.macro_f1 == pytest.approx(0.5)
    assert (report.tpr, report.tnr) == (0.5, 0.5)


def test_agreement_pairwise_has_no_tpr_tnr():
    pred = ["A", "B", "tie", "A"]
    truth = ["A", "B", "B", "A"]
    report = agreement(pred, truth, "pairwise")
    assert report.tpr is None and report.tnr is None
    assert report.n == 4 and report.n_excluded == 0
    assert report.accuracy == 0.75
    assert report.macro_f1 == pytest.approx(macro_f1(pred, truth, PAIRWISE))
    assert report.kappa == pytest.approx(numpy_kappa(pred, truth, PAIRWISE))


@PROPERTY
@given(label_pairs(labels=st.none() | pointwise_labels))
def test_agreement_equals_the_separate_metrics(pair):
    pred, truth = pair
    report = agreement(pred, truth, "pointwise")
    assert report.n == count_scored(pred, truth)
    assert report.n + report.n_excluded == len(pred)
    expected = (accuracy(pred, truth), macro_f1(pred, truth, POINTWISE), cohen_kappa(pred, truth, POINTWISE))
    expected += tpr_tnr(pred, truth)
    got = (report.accuracy, report.macro_f1, report.kappa, report.tpr, report.tnr)
    assert np.allclose(got, expected, equal_nan=True)


# --- input errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: accuracy(["A"], ["A", "B"]), "pred and truth must have the same length, got 1 vs 2"),
        (lambda: cohen_kappa(["A", "B"], ["A"], PAIRWISE), "pred and truth must have the same length, got 2 vs 1"),
        (lambda: macro_f1([], ["A"], PAIRWISE), "pred and truth must have the same length, got 0 vs 1"),
        (lambda: tpr_tnr(["pass"], []), "pred and truth must have the same length, got 1 vs 0"),
        (lambda: agreement(["pass"], [], "pointwise"), "pred and truth must have the same length, got 1 vs 0"),
        (
            lambda: swap_consistency(["A"], ["A", "B"]),
            "label_ab and label_ba_mapped_back must have the same length, got 1 vs 2",
        ),
        (
            lambda: expected_calibration_error([0.5, 0.5], [True]),
            "confidence and correct must have the same length, got 2 vs 1",
        ),
        (
            lambda: reliability_bins([0.5], [True, False]),
            "confidence and correct must have the same length, got 1 vs 2",
        ),
        (
            lambda: cascade_curve(["A"], [0.5], ["A"], ["A", "B"]),
            "inline_label and inline_confidence and frontier_label and human_label must have the same length, "
            "got 1 vs 1 vs 1 vs 2",
        ),
    ],
)
def test_length_mismatch_names_the_arguments(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert str(e.value) == message


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), float("inf")])
def test_confidence_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match=r"confidence\[1\] = .* is outside \[0, 1\]"):
        expected_calibration_error([0.5, bad], [True, False])
    with pytest.raises(ValueError, match=r"confidence\[1\] = .* is outside \[0, 1\]"):
        reliability_bins([0.5, bad], [True, False])
    with pytest.raises(ValueError, match=r"inline_confidence\[1\] = .* is outside \[0, 1\]"):
        cascade_curve(["A", "A"], [0.5, bad], ["A", "A"], ["A", "A"])


def test_other_invalid_inputs():
    with pytest.raises(ValueError, match=r"pred\[1\] = 'maybe' is not one of the labels"):
        cohen_kappa(["pass", "maybe"], ["pass", "fail"], POINTWISE)
    with pytest.raises(ValueError, match=r"truth\[0\] = 'A' is not one of the labels"):
        macro_f1(["pass"], ["A"], POINTWISE)
    with pytest.raises(ValueError, match=r"pred\[0\] = 'A' is not one of the labels"):
        agreement(["A"], ["pass"], "pointwise")
    with pytest.raises(ValueError, match=r"truth\[0\] = 'tie' is not one of the labels \('pass', 'fail'\)"):
        tpr_tnr(["pass"], ["tie"])
    with pytest.raises(ValueError, match="positive and negative must differ, both are 'pass'"):
        tpr_tnr(["pass"], ["pass"], positive="pass", negative="pass")
    with pytest.raises(ValueError, match="kind must be one of"):
        agreement(["A"], ["A"], "listwise")
    with pytest.raises(ValueError, match=r"labels\[0\] = 'maybe'"):
        swap_back(["maybe"])
    with pytest.raises(ValueError, match=r"correct\[0\] = 'yes' is not a bool"):
        expected_calibration_error([0.5], ["yes"])
    with pytest.raises(ValueError, match="n_bins must be a positive integer, got 0"):
        reliability_bins([0.5], [True], n_bins=0)
    with pytest.raises(ValueError, match=r"thresholds\[1\] = nan is not a number"):
        cascade_curve(["A"], [0.5], ["A"], ["A"], thresholds=[0.5, float("nan")])
    with pytest.raises(TypeError, match="pred must be a sequence of values, not a single str"):
        accuracy("AB", ["A", "B"])
