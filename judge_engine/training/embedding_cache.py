"""A content-addressed cache of sentence embeddings (and hidden states), so retraining does not re-encode texts.

Contract:
- Keyed by (namespace, text); the namespace names what is stored: ``sentence_namespace`` (encoder package
  version, max_length and, for a shallower encoder, how many of its layers run), plus the layer for the hidden states
  fine-tuning starts from. Arrays are stored in the cache's ``dtype`` (float32 for
  sentence vectors, so a cached vector is bit-identical to a fresh one and training sees what serving computes;
  float16 for hidden states) and come back with their trailing width (``width``: 1-D vectors when None, else
  ``[rows, width]``).
- One SQLite file (default ``~/.cache/judgeline/embeddings.sqlite``, shared by checkouts on a machine); safe for
  concurrent readers and writers (SQLite locking); a corrupt or unreadable cache is an error naming the file.
- ``vectors(texts, encoder, progress)`` returns ``{text: vector}`` for every distinct text, encoding only the
  missing ones (length-sorted, with a progress callback per encoded text, once for all the cached ones first) and
  storing them.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from schemas import paths

DEFAULT_PATH = paths.CACHE_DIR / "embeddings.sqlite"


def sentence_namespace(max_length: int, layers: int | None = None) -> str:
    """The namespace of sentence vectors made with ``max_length`` tokens per text and the encoder's first ``layers``
    layers (None or all of them: the namespace vectors were always cached under, so existing caches stay valid)."""
    from judge_engine.model.student import ENCODER_DEPTH, encoder_version

    base = f"{encoder_version()}|{max_length}"
    return base if layers in (None, ENCODER_DEPTH) else f"{base}|layers-{layers}"


class EmbeddingCache:
    def __init__(self, path: Path = DEFAULT_PATH, namespace: str = "", dtype=np.float32, width: int | None = None):
        self.dtype, self.width = np.dtype(dtype), width
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB NOT NULL)")

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.namespace}\x1f{text}".encode()).hexdigest()

    def get_many(self, texts: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        keys = {self._key(t): t for t in texts}
        key_list = list(keys)
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            rows = self.db.execute(f"SELECT key, v FROM vec WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, blob in rows:
                array = np.frombuffer(blob, dtype=self.dtype).copy()
                found[keys[key]] = array if self.width is None else array.reshape(-1, self.width)
        return found

    def put_many(self, vectors: dict[str, np.ndarray]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO vec (key, v) VALUES (?, ?)",
                [(self._key(t), np.asarray(v, dtype=self.dtype).tobytes()) for t, v in vectors.items()],
            )

    def vectors(self, texts: Iterable[str], encode: Callable, progress: Callable[[int], None] | None = None):
        """``encode(texts, progress)`` is ``Encoder.encode`` (or ``lower_states``); returns ({text: array} for every
        distinct text, how many were newly encoded)."""
        unique = list(dict.fromkeys(texts))
        have = self.get_many(unique)
        if progress and have:
            progress(len(have))  # the cached ones count as done, so a bar over every distinct text ends at 100 %
        missing = sorted((t for t in unique if t not in have), key=len)  # similar lengths batch together
        for start in range(0, len(missing), 512):  # store as we go: an interrupted run keeps its work
            chunk = missing[start : start + 512]
            fresh = dict(zip(chunk, encode(chunk, progress)))
            self.put_many(fresh)
            have.update(fresh)
        return have, len(missing)

    def close(self) -> None:
        self.db.close()
