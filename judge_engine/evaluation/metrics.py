"""Agreement and calibration metrics for ``judgeline eval``: a judge's labels against human and teacher labels.

Contract:
- Pure functions: no I/O, no global state, inputs are never modified. Inputs are sequences (lists, tuples, arrays;
  a bare ``str`` is refused with ``TypeError``) of label strings in the one vocabulary of :mod:`schemas.base`
  (pairwise ``A``/``B``/``tie``, pointwise ``pass``/``fail``), of confidences (floats) or of correctness flags.
- Missing values are ``None``. An item whose reference label (the truth: a human or teacher label) is missing is
  excluded from that metric; so is an item whose predicted label is missing (a missing verdict cannot be scored).
  Metrics are computed over the items where both are present; the count used is reported where the result has room
  for it (``AgreementReport.n`` / ``n_excluded``, the ``count`` of each reliability bin, the ``n`` of each cascade
  point) and :func:`count_scored` gives it for any pair of label sequences.
- All rates (accuracy, F1, TPR/TNR, fractions, ECE) are fractions in ``[0, 1]``; Cohen's kappa is in ``[-1, 1]``.
- An undefined value is ``float('nan')``, never an error: any metric over zero scored items, kappa when the
  expected agreement is 1 (both raters used one and the same label throughout), TPR with no positive in the truth,
  TNR with no negative, macro-F1 when no label of ``labels`` occurs, an empty reliability bin.
- Invalid input is an error: sequences that must pair up but differ in length raise ``ValueError`` naming the
  arguments and both lengths; a confidence outside ``[0, 1]`` (or NaN) raises ``ValueError`` naming the argument,
  the index and the value; a label outside the ``labels`` given (macro-F1, kappa, TPR/TNR, :func:`agreement`)
  raises ``ValueError`` naming it; a correctness flag that is not a bool (or 0/1) raises ``ValueError``.
- Pointwise TPR/TNR: the positive class is ``pass``. TPR is the recall of ``pass`` (of the items the reference
  labels ``pass``, the fraction the judge labels ``pass``); TNR is the recall of ``fail``.
- Calibration uses ``n_bins`` equal-width bins over ``[0, 1]``: bin ``i`` holds ``lo <= c < hi`` with
  ``lo = i / n_bins`` and ``hi = (i + 1) / n_bins``; the last bin also holds ``c == 1``. ECE is the bin-count
  weighted mean of ``|accuracy - mean confidence|`` over the non-empty bins.
- Cascade: at threshold ``t`` an item whose inline confidence is ``< t`` is routed to the frontier judge; its
  verdict becomes the recorded teacher (frontier) label, or, where none was recorded, the inline label stands and
  the item counts as routed-but-unanswered. ``frontier_fraction`` counts every routed item (answered or not),
  ``unanswered_fraction`` the routed items without a teacher label; both are fractions of the ``n`` items that
  have a human label and an inline verdict. ``t = 0`` routes nothing, ``t > 1`` routes everything.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from schemas.base import LABELS_BY_KIND, SWAPPED_LABEL

NAN = float("nan")
POSITIVE_LABEL = "pass"
NEGATIVE_LABEL = "fail"
DEFAULT_N_BINS = 10
# 0.00, 0.05, ..., 1.00, then one threshold above every confidence (routes every item).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21)) + (1.0001,)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AgreementReport",
    "CascadePoint",
    "ReliabilityBin",
    "accuracy",
    "agreement",
    "cascade_curve",
    "cohen_kappa",
    "count_scored",
    "expected_calibration_error",
    "macro_f1",
    "reliability_bins",
    "swap_back",
    "swap_consistency",
    "tpr_tnr",
]


class ReliabilityBin(TypedDict):
    lo: float
    hi: float
    count: int
    mean_confidence: float
    accuracy: float


class CascadePoint(TypedDict):
    threshold: float
    n: int
    frontier_fraction: float
    unanswered_fraction: float
    accuracy_vs_human: float


# --- validation helpers -----------------------------------------------------------------------------------------------


def _as_list(name: str, values: Sequence[Any]) -> list[Any]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of values, not a single {type(values).__name__}")
    return list(values)


def _same_length(**named: list[Any]) -> None:
    lengths = {name: len(values) for name, values in named.items()}
    if len(set(lengths.values())) > 1:
        names = " and ".join(lengths)
        sizes = " vs ".join(str(n) for n in lengths.values())
        raise ValueError(f"{names} must have the same length, got {sizes}")


def _check_confidences(name: str, values: list[Any]) -> None:
    for i, value in enumerate(values):
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}] = {value!r} is not a number; confidences are floats in [0, 1]") from None
        if not 0.0 <= number <= 1.0:  # also rejects NaN
            raise ValueError(f"{name}[{i}] = {value!r} is outside [0, 1]; confidences are probabilities")


def _check_flags(name: str, values: list[Any]) -> None:
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, (str, bytes, float)) or value not in (0, 1):
            raise ValueError(f"{name}[{i}] = {value!r} is not a bool; pass True/False (or None when unknown)")


def _check_vocabulary(labels: Sequence[str], **named: list[str]) -> None:
    allowed = set(labels)
    for name, values in named.items():
        for i, value in enumerate(values):
            if value not in allowed:
                raise ValueError(f"{name}[{i}] = {value!r} is not one of the labels {tuple(labels)!r}")


def _paired(pred_name: str, pred: Sequence[Any], truth_name: str, truth: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Both sequences, validated to pair up, restricted to the items where both are present."""
    p = _as_list(pred_name, pred)
    t = _as_list(truth_name, truth)
    _same_length(**{pred_name: p, truth_name: t})
    kept = [(a, b) for a, b in zip(p, t) if a is not None and b is not None]
    return [a for a, _ in kept], [b for _, b in kept]


def _labels(labels: Sequence[str]) -> list[str]:
    out = list(dict.fromkeys(_as_list("labels", labels)))
    if not out:
        raise ValueError("labels must name at least one label")
    return out


# --- agreement with a reference ---------------------------------------------------------------------------------------


def count_scored(pred: Sequence[str | None], truth: Sequence[str | None]) -> int:
    """How many items the label metrics score: those where both ``pred`` and ``truth`` are present."""
    p, _ = _paired("pred", pred, "truth", truth)
    return len(p)


def accuracy(pred: Sequence[str | None], truth: Sequence[str | None]) -> float:
    """Fraction of scored items where ``pred == truth``; NaN when none is scored."""
    p, t = _paired("pred", pred, "truth", truth)
    if not p:
        return NAN
    return sum(a == b for a, b in zip(p, t)) / len(p)


def macro_f1(pred: Sequence[str | None], truth: Sequence[str | None], labels: Sequence[str]) -> float:
    """Unweighted mean over ``labels`` of F1 = 2TP / (2TP + FP + FN), one-vs-rest.

    A label absent from both ``pred`` and ``truth`` (over the scored items) is skipped rather than counted as 0 or 1;
    NaN when every label is skipped (in particular when no item is scored).
    """
    vocabulary = _labels(labels)
    p, t = _paired("pred", pred, "truth", truth)
    _check_vocabulary(vocabulary, pred=p, truth=t)
    scores = []
    for label in vocabulary:
        tp = sum(a == label and b == label for a, b in zip(p, t))
        fp = sum(a == label and b != label for a, b in zip(p, t))
        fn = sum(a != label and b == label for a, b in zip(p, t))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else NAN


def cohen_kappa(pred: Sequence[str | None], truth: Sequence[str | None], labels: Sequence[str]) -> float:
    """Cohen's kappa (po - pe) / (1 - pe) with pe from the two raters' marginal label frequencies.

    Computed in exact integer arithmetic; NaN when no item is scored or when pe is 1 (both raters used one and the
    same label for every item, so chance explains all agreement).
    """
    vocabulary = _labels(labels)
    p, t = _paired("pred", pred, "truth", truth)
    _check_vocabulary(vocabulary, pred=p, truth=t)
    n = len(p)
    if n == 0:
        return NAN
    agree = sum(a == b for a, b in zip(p, t))
    pred_counts, truth_counts = Counter(p), Counter(t)
    chance = sum(pred_counts[label] * truth_counts[label] for label in vocabulary)  # pe * n^2
    if chance == n * n:
        return NAN
    return (agree * n - chance) / (n * n - chance)


def tpr_tnr(
    pred: Sequence[str | None],
    truth: Sequence[str | None],
    positive: str = POSITIVE_LABEL,
    negative: str = NEGATIVE_LABEL,
) -> tuple[float, float]:
    """(TPR, TNR): recall of ``positive`` and recall of ``negative`` against ``truth``.

    With the defaults the positive class is ``pass``: TPR is the fraction of reference-``pass`` items the judge
    passes, TNR the fraction of reference-``fail`` items it fails. Each is NaN when the truth has no item of its class.
    """
    if positive == negative:
        raise ValueError(f"positive and negative must differ, both are {positive!r}")
    p, t = _paired("pred", pred, "truth", truth)
    _check_vocabulary((positive, negative), pred=p, truth=t)

    def recall(label: str) -> float:
        relevant = [a for a, b in zip(p, t) if b == label]
        return sum(a == label for a in relevant) / len(relevant) if relevant else NAN

    return recall(positive), recall(negative)


# --- position bias ----------------------------------------------------------------------------------------------------


def swap_back(labels: Sequence[str | None]) -> list[str | None]:
    """Map verdicts given on the swapped order (B shown first) back to the original order: A<->B, the rest as is."""
    out: list[str | None] = []
    for i, label in enumerate(_as_list("labels", labels)):
        if label is not None and label not in SWAPPED_LABEL:
            raise ValueError(f"labels[{i}] = {label!r} is not one of the labels {tuple(SWAPPED_LABEL)!r}")
        out.append(None if label is None else SWAPPED_LABEL[label])
    return out


def swap_consistency(label_ab: Sequence[str | None], label_ba_mapped_back: Sequence[str | None]) -> float:
    """Fraction of items whose verdict in the original order equals the swapped-order verdict mapped back.

    ``label_ba_mapped_back`` must already be in the original order's terms (see :func:`swap_back`). Items where
    either verdict is missing are excluded; NaN when none is left.
    """
    ab, ba = _paired("label_ab", label_ab, "label_ba_mapped_back", label_ba_mapped_back)
    if not ab:
        return NAN
    return sum(a == b for a, b in zip(ab, ba)) / len(ab)


# --- calibration ------------------------------------------------------------------------------------------------------


def _calibration_pairs(
    confidence: Sequence[float | None], correct: Sequence[bool | None], n_bins: int
) -> tuple[list[float], list[bool]]:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    conf = _as_list("confidence", confidence)
    flags = _as_list("correct", correct)
    _same_length(confidence=conf, correct=flags)
    _check_confidences("confidence", conf)
    _check_flags("correct", flags)
    kept = [(float(c), bool(k)) for c, k in zip(conf, flags) if c is not None and k is not None]
    return [c for c, _ in kept], [k for _, k in kept]


def reliability_bins(
    confidence: Sequence[float | None], correct: Sequence[bool | None], n_bins: int = DEFAULT_N_BINS
) -> list[ReliabilityBin]:
    """The ``n_bins`` equal-width bins of a reliability diagram, lowest first, empty ones included.

    Each bin: ``lo``, ``hi``, ``count`` (scored items in it), ``mean_confidence`` and ``accuracy`` (fraction correct),
    the last two NaN when the bin is empty. Items with a missing confidence or correctness flag are excluded.
    """
    conf, flags = _calibration_pairs(confidence, correct, n_bins)
    edges = [i / n_bins for i in range(n_bins + 1)]
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for index, c in enumerate(conf):
        members[min(bisect_right(edges, c) - 1, n_bins - 1)].append(index)
    bins: list[ReliabilityBin] = []
    for i, indices in enumerate(members):
        count = len(indices)
        bins.append(
            ReliabilityBin(
                lo=edges[i],
                hi=edges[i + 1],
                count=count,
                mean_confidence=sum(conf[j] for j in indices) / count if count else NAN,
                accuracy=sum(flags[j] for j in indices) / count if count else NAN,
            )
        )
    return bins


def expected_calibration_error(
    confidence: Sequence[float | None], correct: Sequence[bool | None], n_bins: int = DEFAULT_N_BINS
) -> float:
    """ECE = sum over non-empty bins of (count / n) * |accuracy - mean confidence|; NaN when nothing is scored."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return NAN
    return sum(b["count"] / total * abs(b["accuracy"] - b["mean_confidence"]) for b in bins if b["count"])


# --- cascade ----------------------------------------------------------------------------------------------------------


def cascade_curve(
    inline_label: Sequence[str | None],
    inline_confidence: Sequence[float | None],
    frontier_label: Sequence[str | None],
    human_label: Sequence[str | None],
    thresholds: Sequence[float] | None = None,
) -> list[CascadePoint]:
    """One point per threshold (in the order given; default :data:`DEFAULT_THRESHOLDS`) of the inline->frontier cascade.

    At threshold ``t`` the items with ``inline_confidence < t`` are routed; a routed item takes its ``frontier_label``
    when one was recorded and keeps its inline label otherwise (counted in ``unanswered_fraction``). Scored items are
    those with a human label and an inline verdict (label and confidence); their number is each point's ``n``.
    Fractions and accuracy are NaN when ``n`` is 0.
    """
    inline = _as_list("inline_label", inline_label)
    conf = _as_list("inline_confidence", inline_confidence)
    frontier = _as_list("frontier_label", frontier_label)
    human = _as_list("human_label", human_label)
    _same_length(inline_label=inline, inline_confidence=conf, frontier_label=frontier, human_label=human)
    _check_confidences("inline_confidence", conf)
    chosen = DEFAULT_THRESHOLDS if thresholds is None else tuple(_as_list("thresholds", thresholds))
    for i, t in enumerate(chosen):
        try:
            ok = not math.isnan(float(t))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"thresholds[{i}] = {t!r} is not a number")

    items = [
        (lab, float(c), f, h)
        for lab, c, f, h in zip(inline, conf, frontier, human)
        if lab is not None and c is not None and h is not None
    ]
    n = len(items)
    points: list[CascadePoint] = []
    for t in chosen:
        threshold = float(t)
        routed = unanswered = right = 0
        for lab, c, f, h in items:
            verdict = lab
            if c < threshold:
                routed += 1
                if f is None:
                    unanswered += 1
                else:
                    verdict = f
            right += verdict == h
        points.append(
            CascadePoint(
                threshold=threshold,
                n=n,
                frontier_fraction=routed / n if n else NAN,
                unanswered_fraction=unanswered / n if n else NAN,
                accuracy_vs_human=right / n if n else NAN,
            )
        )
    return points


# --- the bundle -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementReport:
    """Agreement of a judge's labels with reference labels, over the ``n`` items where both are present.

    ``n_excluded`` items had a missing label on either side. ``tpr``/``tnr`` (positive class ``pass``) are set for
    pointwise and ``None`` for pairwise. Undefined values are NaN (see the module contract).
    """

    kind: str
    n: int
    n_excluded: int
    accuracy: float
    macro_f1: float
    kappa: float
    tpr: float | None
    tnr: float | None


def agreement(pred: Sequence[str | None], truth: Sequence[str | None], kind: str) -> AgreementReport:
    """Accuracy, macro-F1 and kappa over the labels of ``kind``, plus TPR/TNR for ``pointwise``."""
    if kind not in LABELS_BY_KIND:
        raise ValueError(f"kind must be one of {tuple(LABELS_BY_KIND)!r}, got {kind!r}")
    labels = LABELS_BY_KIND[kind]
    given = _as_list("pred", pred)
    p, t = _paired("pred", given, "truth", truth)
    _check_vocabulary(labels, pred=p, truth=t)
    tpr: float | None = None
    tnr: float | None = None
    if kind == "pointwise":
        tpr, tnr = tpr_tnr(p, t)
    return AgreementReport(
        kind=kind,
        n=len(p),
        n_excluded=len(given) - len(p),
        accuracy=accuracy(p, t),
        macro_f1=macro_f1(p, t, labels),
        kappa=cohen_kappa(p, t, labels),
        tpr=tpr,
        tnr=tnr,
    )


def auroc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """Area under the ROC curve of a score separating ``positives`` from ``negatives``: the probability that a
    positive scores above a negative, ties counting half (the Mann-Whitney U over the product of the sizes);
    NaN when either side is empty."""
    from scipy.stats import mannwhitneyu

    neg, pos = _as_list("negatives", negatives), _as_list("positives", positives)
    if not neg or not pos:
        return float("nan")
    return float(mannwhitneyu(pos, neg).statistic) / (len(pos) * len(neg))
