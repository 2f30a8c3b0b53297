"""Novelty: k-NN distance in the judge's embedding space, the threshold from held-out scores, AUROC."""

import numpy as np
import pytest

from judge_engine.evaluation.metrics import auroc
from judge_engine.model.novelty import NoveltyIndex, item_matrix, item_vector


def _cluster(rng, centre, n, spread=0.05):
    x = centre + spread * rng.standard_normal((n, len(centre)))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_items_unlike_the_training_set_score_higher_and_cross_the_threshold():
    rng = np.random.default_rng(0)
    home, away = np.eye(16)[0], np.eye(16)[1]
    index = NoveltyIndex.build(_cluster(rng, home, 500), _cluster(rng, home, 200), k=5, percentile=99.0)
    same, other = index.score(_cluster(rng, home, 200)), index.score(_cluster(rng, away, 200))
    assert other.min() > same.max()
    assert np.mean(index.is_novel(same)) <= 0.05 and index.is_novel(other).all()
    assert auroc(same, other) == 1.0
    # the threshold is the percentile of the held-out scores (not of indexed items scored against themselves)
    held = _cluster(rng, home, 300)
    again = NoveltyIndex.build(index.matrix, held, k=5, percentile=90.0)
    assert again.threshold == pytest.approx(float(np.percentile(index.score(held), 90.0)), rel=1e-6)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    index = NoveltyIndex.build(_cluster(rng, np.eye(8)[0], 50), _cluster(rng, np.eye(8)[0], 20), k=3)
    assert index.save(tmp_path).name == "novelty.npz"
    loaded = NoveltyIndex.load(tmp_path)
    assert loaded.k == 3 and loaded.threshold == pytest.approx(index.threshold)
    q = _cluster(rng, np.eye(8)[2], 10)
    assert np.allclose(loaded.score(q), index.score(q), atol=2e-3)  # the stored vectors are float16
    np.savez(tmp_path / "novelty.npz", matrix=index.matrix, k=3)
    with pytest.raises(ValueError, match="lacks percentile"):
        NoveltyIndex.load(tmp_path)


def test_item_vector_uses_question_and_answers():
    v = {"q": np.array([1.0, 0.0]), "a": np.array([0.0, 1.0]), "b": np.array([0.0, 3.0])}
    pair = item_vector({"kind": "pairwise", "question": "q", "answer_a": "a", "answer_b": "b"}, v)
    assert np.allclose(pair, np.array([1.0, 2.0]) / np.sqrt(5.0))
    assert item_matrix([], v).shape == (0, 0)
    with pytest.raises(ValueError, match="needs training items"):
        NoveltyIndex.build(np.zeros((0, 2)), np.ones((1, 2)))


def test_auroc_known_values():
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0 and auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert auroc([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], [0.2, 0.5, 0.6, 0.9]) == pytest.approx(11 / 16)
    assert np.isnan(auroc([], [1.0]))
