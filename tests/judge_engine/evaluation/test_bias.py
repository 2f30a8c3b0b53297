"""Bias meters: longer-answer preference, first-position preference, accuracy where the shorter answer won."""

import pytest

from judge_engine.evaluation import bias


def _pair(a_words, b_words):
    return {"kind": "pairwise", "question": "q?", "answer_a": "w " * a_words, "answer_b": "w " * b_words}


ITEMS = [_pair(9, 2), _pair(9, 2), _pair(2, 9), _pair(2, 9), _pair(4, 4), _pair(3, 7),
         {"kind": "pointwise", "question": "q?", "answer": "a"}]
HUMAN = ["A", "B", "B", "A", "A", "tie", "pass"]  # longer won twice of four with a length difference


def test_longer_and_first_wins_count_only_decided_pairs_of_different_lengths():
    judge = ["A", "A", "B", "B", "B", "B", "pass"]  # always the longer one where lengths differ
    assert bias.longer_wins(ITEMS, judge) == {"rate": 1.0, "n": 5}
    assert bias.longer_wins(ITEMS, HUMAN) == {"rate": 0.5, "n": 4}
    assert bias.first_wins(ITEMS, judge) == {"rate": pytest.approx(2 / 6), "n": 6}
    assert bias.longer_wins(ITEMS, [None] * 7) == {"rate": None, "n": 0}


def test_accuracy_where_the_human_chose_the_shorter_answer():
    judge = ["A", "A", "B", "A", "B", "A", "pass"]
    # the human chose the shorter answer on items 1 (B) and 3 (A): the judge is right on item 3 only
    assert bias.accuracy_where_shorter_won(ITEMS, judge, HUMAN) == {"rate": 0.5, "n": 2}


def test_meters_put_student_teacher_and_humans_side_by_side():
    out = bias.meters(ITEMS, {"student": {"labels": ["A"] * 6 + ["pass"], "first_order": ["B"] * 6 + ["pass"]},
                              "teacher": {"labels": HUMAN}}, HUMAN)
    assert set(out) == {"student", "teacher", "human"}
    assert out["student"]["first_wins"]["rate"] == 0.0  # read from the one-order labels
    assert out["teacher"] == out["human"]
    assert out["human"]["accuracy_where_shorter_won"]["rate"] == 1.0
