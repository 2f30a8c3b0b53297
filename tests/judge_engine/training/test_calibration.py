"""Temperature scaling recovers the temperature that makes scores probabilities."""

import numpy as np
import pytest

from judge_engine.training import calibration


def _overconfident(true_t: float, n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(n, 3))
    p = np.exp(logits / true_t)
    p /= p.sum(1, keepdims=True)
    targets = np.array([rng.choice(3, p=row) for row in p])
    return logits, targets


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(true_t):
    logits, targets = _overconfident(true_t)
    fitted = calibration.fit_temperature(logits, targets)
    assert fitted == pytest.approx(true_t, rel=0.15)
    assert calibration.nll(logits, targets, fitted) <= calibration.nll(logits, targets, 1.0) + 1e-9


def test_no_rows_means_no_change():
    assert calibration.fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
