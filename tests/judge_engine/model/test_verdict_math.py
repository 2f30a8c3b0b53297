"""verdict_math: labels, order-invariant combination of both answer orders, temperature."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from judge_engine.model import verdict_math as vm

logit_rows = arrays(np.float64, (4, 3), elements=st.floats(-20, 20, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(ab=logit_rows, ba=logit_rows)
def test_combined_verdict_does_not_depend_on_which_order_came_first(ab, ba):
    """Scoring (A,B) then (B,A) or the items presented the other way round gives mirrored verdicts."""
    first, c1 = vm.combine_orders(ab, ba)
    second, c2 = vm.combine_orders(ba, ab)  # the same item with its answers swapped
    np.testing.assert_allclose(first, second[:, vm.SWAP_AB])
    unique_max = [(r == r.max()).sum() == 1 for r in np.vstack([ab, ba])]  # an exact tie has no order-free argmax
    rows = np.array(unique_max[:4]) & np.array(unique_max[4:])
    assert (c1[rows] == c2[rows]).all()


def test_consistency_flags_orders_that_disagree():
    ab = np.array([[3.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    ba = np.array([[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]])  # row 0: B in swapped order = A; row 1: A again = B
    _, consistent = vm.combine_orders(ab, ba)
    assert consistent.tolist() == [True, False]


def test_verdicts_pick_label_score_and_confidence():
    out = vm.verdicts("pairwise", np.array([[0.0, 2.0, 0.0]]))[0]
    assert out["label"] == "B"
    assert out["confidence"] == pytest.approx(np.exp(2) / (np.exp(2) + 2))
    assert out["score"] == pytest.approx(1 / (np.exp(2) + 2))  # P(A)
    point = vm.verdicts("pointwise", np.array([[1.0, 0.0]]))[0]
    assert point["label"] == "pass" and point["score"] == point["confidence"] > 0.5
    assert vm.padded_probs(point["probs"]) == [*point["probs"], 0.0]


def test_temperature_changes_confidence_never_the_label():
    logits = np.array([[2.0, 0.5, 0.1], [0.0, 0.3, 1.0]])
    sharp, soft = vm.verdicts("pairwise", logits, 0.5), vm.verdicts("pairwise", logits, 3.0)
    assert [s["label"] for s in sharp] == [s["label"] for s in soft]
    assert all(a["confidence"] > b["confidence"] for a, b in zip(sharp, soft))


@pytest.mark.parametrize("kind, logits, temperature, match", [
    ("pairwise", np.zeros((1, 2)), 1.0, r"\[n, 3\]"),
    ("pointwise", np.zeros((1, 3)), 1.0, r"\[n, 2\]"),
    ("ranking", np.zeros((1, 3)), 1.0, "kind must be"),
    ("pairwise", np.zeros((1, 3)), 0.0, "temperature"),
])
def test_bad_shapes_and_values_are_refused(kind, logits, temperature, match):
    with pytest.raises(ValueError, match=match):
        vm.verdicts(kind, logits, temperature)
