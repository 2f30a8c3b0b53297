"""From a judge's raw scores to a verdict: labels, order-invariant combination, temperature, confidence.

Contract (numpy only, no project imports: this file is copied flat beside Triton python-backend models, both the
CPU judge and the TensorRT-LLM postprocessing, so every judge turns scores into verdicts the same way):
- ``LABELS[kind]`` is the label order of every logit/probability vector: pairwise ``(A, B, tie)``, pointwise
  ``(pass, fail)``. Pointwise vectors are padded to 3 with a zero-probability slot when a fixed width is needed.
- ``combine_orders(logits_ab, logits_ba)``: pairwise logits scored in both answer orders. ``logits_ba`` was
  scored with the answers swapped, so its A/B columns are swapped back before the two are averaged (mean of
  logits, i.e. a geometric mean of the probabilities). The result does not depend on which order was shown
  first. ``consistent`` is True where both orders pick the same label once mapped back.
- ``verdicts(kind, logits, temperature)``: softmax of ``logits / temperature`` -> label (argmax), ``score``
  (probability of the positive label: ``A`` or ``pass``), ``confidence`` (probability of the chosen label) and
  the probability vector. Temperature must be > 0; 1.0 leaves the scores as they are.
"""

from __future__ import annotations

import numpy as np

LABELS: dict[str, tuple[str, ...]] = {"pairwise": ("A", "B", "tie"), "pointwise": ("pass", "fail")}
POSITIVE = {"pairwise": "A", "pointwise": "pass"}
SWAP_AB = np.array([1, 0, 2])  # column permutation that exchanges A and B, keeps tie


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def combine_orders(logits_ab: np.ndarray, logits_ba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(combined logits [n, 3], consistent [n] bool) from both orders' pairwise logits [n, 3]."""
    ab = np.asarray(logits_ab, dtype=np.float64)
    back = np.asarray(logits_ba, dtype=np.float64)[..., SWAP_AB]
    if ab.shape != back.shape or ab.shape[-1] != 3:
        raise ValueError(f"pairwise logits must both be [n, 3], got {ab.shape} and {back.shape}")
    consistent = ab.argmax(axis=-1) == back.argmax(axis=-1)
    return (ab + back) / 2.0, consistent


def verdicts(kind: str, logits: np.ndarray, temperature: float = 1.0) -> list[dict]:
    """One dict per row: label, score, confidence, probs (label order of ``LABELS[kind]``)."""
    if kind not in LABELS:
        raise ValueError(f"kind must be one of {sorted(LABELS)}, got {kind!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    labels = LABELS[kind]
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != len(labels):
        raise ValueError(f"{kind} logits must be [n, {len(labels)}], got {z.shape}")
    probs = softmax(z / temperature)
    positive = labels.index(POSITIVE[kind])
    out = []
    for row in probs:
        best = int(row.argmax())
        out.append(
            {
                "label": labels[best],
                "score": float(row[positive]),
                "confidence": float(row[best]),
                "probs": [float(p) for p in row],
            }
        )
    return out


def padded_probs(probs: list[float], width: int = 3) -> list[float]:
    """A probability vector padded with zeros to ``width`` (pointwise vectors in a fixed-width output tensor)."""
    return list(probs) + [0.0] * (width - len(probs))
