"""Bias meters of a pairwise judge: how much it prefers the longer answer and the first position.

Contract:
- Every meter takes parallel lists (items as dicts or gold items, labels ``A``/``B``/``tie`` or None) and returns
  a fraction in [0, 1], or None when no item qualifies; ``n`` counts say how many did.
- ``longer_wins``: P(the label picks the answer with more words | the label is not a tie and the lengths differ).
- ``first_wins``: P(label = A | not a tie): for a judge, measured on its verdicts in one answer order (before
  order combination; after it, a judge is position-free by construction).
- ``accuracy_where_shorter_won``: the accuracy of ``pred`` against ``human`` on the pairs the human gave to the
  shorter answer, the pairs a length-biased judge gets wrong.
- ``meters(items, judges, human)`` computes the three for several judges on the same items (one dict per
  judge; each judge: ``labels`` and, optionally, ``first_order`` labels), so student, teacher and humans read
  side by side.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from judge_engine.dataset import item_dict, longer_answer


def _pairs(items: Sequence) -> list[dict | None]:
    out = []
    for it in items:
        d = item_dict(it)
        out.append(d if d["kind"] == "pairwise" else None)
    return out


def _rate(hits: list[bool]) -> dict:
    return {"rate": sum(hits) / len(hits) if hits else None, "n": len(hits)}


def longer_wins(items: Sequence, labels: Sequence[str | None]) -> dict:
    hits = []
    for d, label in zip(_pairs(items), labels):
        if d is None or label not in ("A", "B") or (long := longer_answer(d)) is None:
            continue
        hits.append(label == long)
    return _rate(hits)


def first_wins(items: Sequence, labels: Sequence[str | None]) -> dict:
    return _rate([label == "A" for d, label in zip(_pairs(items), labels) if d is not None and label in ("A", "B")])


def accuracy_where_shorter_won(items: Sequence, pred: Sequence[str | None], human: Sequence[str | None]) -> dict:
    hits = []
    for d, p, h in zip(_pairs(items), pred, human):
        if d is None or h not in ("A", "B") or (long := longer_answer(d)) is None or h == long:
            continue
        hits.append(p == h)
    return _rate(hits)


def meters(items: Sequence, judges: Mapping[str, Mapping[str, Sequence]], human: Sequence[str | None]) -> dict:
    """{judge: {longer_wins, first_wins, accuracy_where_shorter_won}} (each ``{rate, n}``); ``judges`` maps a name to
    ``{"labels": [...], "first_order": [...] (optional; else ``labels``)}``. Humans are a judge too."""
    out = {}
    for name, j in {**judges, "human": {"labels": human}}.items():
        out[name] = {
            "longer_wins": longer_wins(items, j["labels"]),
            "first_wins": first_wins(items, j.get("first_order") or j["labels"]),
            "accuracy_where_shorter_won": accuracy_where_shorter_won(items, j["labels"], human),
        }
    return out
