"""Confidence calibration: fit one temperature per kind on a validation split, so confidence means probability.

Contract:
- ``fit_temperature(logits, targets)`` returns the T > 0 minimising the negative log-likelihood of
  ``softmax(logits / T)`` on the given (validation) rows: a golden-section search over log T in [0.05, 20],
  deterministic and dependency-free. With no rows it returns 1.0 (nothing to fit; the caller reports it).
- ``nll(logits, targets, T)`` is that objective, for reporting before/after.
- Temperature scaling never changes a label (argmax), only the confidence; ECE and the reliability diagram
  (``judge_engine.evaluation.metrics``, ``judge_engine.evaluation.plots``) measure the result on held-out data.
"""

from __future__ import annotations

import math

import numpy as np

from judge_engine.model.verdict_math import softmax

T_MIN, T_MAX = 0.05, 20.0


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(targets)), np.asarray(targets)].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, iterations: int = 80) -> float:
    if len(targets) == 0:
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    golden = (math.sqrt(5) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = nll(logits, targets, math.exp(a)), nll(logits, targets, math.exp(b))
    for _ in range(iterations):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = nll(logits, targets, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = nll(logits, targets, math.exp(b))
    return float(math.exp((lo + hi) / 2))


def confidences(logits: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class index, its probability) per row."""
    p = softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return p.argmax(axis=1), p.max(axis=1)
