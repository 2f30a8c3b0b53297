"""Novelty: how unlike the items a judge version was trained on a new item is, in the judge's own embedding space.

Contract:
- Self-contained (numpy only, no project import): it is copied into every Triton version beside ``student.py``.
- ``item_vector(item, vectors)``: the L2-normalised sum of the item's question embedding and the mean of its answer
  embeddings (``vectors``: text -> the judge's sentence embedding, as ``student.texts_of`` lists the texts;
  ``answer_key(item, answer)`` names an answer's text where it is not the answer itself: the cross-encoder's).
- ``NoveltyIndex.build(train, calibration, k, percentile)``: the index holds the training items' vectors; an item's
  score is its mean cosine distance to its ``k`` nearest indexed items; the threshold is the ``percentile`` of the
  scores of ``calibration`` items (held-out items of the training distribution, not in the index: scoring indexed
  items against themselves would understate the distance). ``is_novel(score)`` is ``score > threshold``.
- ``save``/``load``: one ``novelty.npz`` (float16 vectors, k, percentile, threshold); ``load`` refuses a file
  missing any of them, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

FILENAME = "novelty.npz"


def item_vector(item: Mapping, vectors: Mapping[str, np.ndarray],
                answer_key: Callable[[Mapping, str], str] | None = None) -> np.ndarray:
    answers = [item["answer_a"], item["answer_b"]] if item["kind"] == "pairwise" else [item["answer"]]
    if answer_key is not None:  # the cross-encoder's answers are keyed with their question (student.answer_key)
        answers = [answer_key(item, a) for a in answers]
    v = np.asarray(vectors[item["question"]], dtype=np.float32) + np.mean(
        [np.asarray(vectors[a], dtype=np.float32) for a in answers], axis=0)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def item_matrix(items: Sequence[Mapping], vectors: Mapping[str, np.ndarray],
                answer_key: Callable[[Mapping, str], str] | None = None) -> np.ndarray:
    if not items:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([item_vector(it, vectors, answer_key) for it in items]).astype(np.float32)


@dataclass(frozen=True)
class NoveltyIndex:
    matrix: np.ndarray  # (n, d), rows L2-normalised
    k: int
    percentile: float
    threshold: float

    def score(self, queries: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Mean cosine distance of each query row to its ``k`` nearest indexed rows."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(self.k, len(self.matrix))
        index = self.matrix.astype(np.float32)
        out = np.empty(len(queries), dtype=np.float32)
        for start in range(0, len(queries), chunk):
            sims = queries[start : start + chunk] @ index.T
            top = -np.partition(-sims, k - 1, axis=1)[:, :k]
            out[start : start + chunk] = 1.0 - top.mean(axis=1)
        return out

    def is_novel(self, scores: np.ndarray | float) -> np.ndarray | bool:
        return np.asarray(scores) > self.threshold

    @classmethod
    def build(cls, train: np.ndarray, calibration: np.ndarray, k: int = 10,
              percentile: float = 99.0) -> "NoveltyIndex":
        if len(train) == 0 or len(calibration) == 0:
            raise ValueError("novelty index: needs training items to index and held-out items to set the threshold")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"novelty percentile must be in (0, 100], got {percentile!r}")
        probe = cls(np.asarray(train, dtype=np.float32), k, percentile, float("inf"))
        threshold = float(np.percentile(probe.score(calibration), percentile))
        return cls(probe.matrix, k, percentile, threshold)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FILENAME
        np.savez_compressed(path, matrix=self.matrix.astype(np.float16), k=self.k, percentile=self.percentile,
                            threshold=self.threshold)
        return path

    @classmethod
    def load(cls, directory: Path) -> "NoveltyIndex":
        path = Path(directory) / FILENAME
        with np.load(path) as data:
            missing = [f for f in ("matrix", "k", "percentile", "threshold") if f not in data.files]
            if missing:
                raise ValueError(f"{path} lacks {missing[0]}; re-run `judgeline train` to rebuild the novelty index")
            return cls(data["matrix"].astype(np.float32), int(data["k"]), float(data["percentile"]),
                       float(data["threshold"]))

