"""`judgeline train`: distil the student judge from recorded teacher verdicts, calibrate it, measure it held out.

Contract:
- Input: gold-format files (``.jsonl`` or streamed ``.jsonl.gz``, optionally a seeded random sample of each:
  ``sample_per_file``); the label is the verdict of the first of the chosen teachers that gave one
  (``judge_engine.dataset``), a soft target where the file records the teacher's probability
  (``meta.teacher_prob_b``; the heads train on soft cross-entropy); with ``length_balance`` the pairwise
  examples are length-balanced (as many longer-won as shorter-won pairs) before the split; split by
  question into train / validation / test. Training uses only the train split (augmented: both answer orders,
  reference drop); the validation split chooses the epoch (early stopping on its loss) and fits the temperature;
  the test split is measured once, at the end, and never influences anything.
- Student (``judge_engine.model.student``, ``arch`` bi or cross): the heads first train on frozen all-MiniLM-L6-v2 sentence
  embeddings (its first ``encoder_layers`` layers; the heads' initial weights seeded by ``seed``, so one config trains
  one model), which
  are cached (``embedding_cache``), so that stage takes seconds once the texts are encoded; encoding is the cost
  (minutes for the shared sets on 2 cores, a progress bar shows it). With ``finetune_layers`` > 0
  (``judge_engine.training.finetune``) the encoder's top layers and the heads then train together, the best point on
  validation kept (the frozen one included); the temperature is fitted and the test split measured after that,
  on the embeddings of the kept weights.
- Output: a model directory (``heads.pt``, ``encoder_top.pt`` when fine-tuned, ``student.json`` with temperatures, teacher, data files and hashes,
  split sizes, the fingerprints of every train/validation item, the calibrated verdicts on the validation split
  beside their labels (``validation_evidence``: where a routing policy of this version starts), test metrics) plus
  ``novelty.npz`` (``judge_engine.model.novelty``: the train split indexed in the judge's embedding space, the
  threshold at the ``novelty_percentile`` of the validation split's scores), ``reliability.png`` and
  ``training_report.json``. ``judgeline export`` turns it into a Triton model version.
- Kinds without training examples are left untrained and recorded so; the served judge refuses them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from judge_engine.dataset import (
    Example,
    augment,
    label_examples,
    length_balance,
    load_gold,
    split,
    teachers_of,
)
from judge_engine.evaluation import metrics, plots
from judge_engine.model.student import (
    ARCHS,
    ENCODER_DEPTH,
    check_layers,
    Encoder,
    StudentHeads,
    answer_key,
    pair_features,
    point_features,
    texts_of,
)
from judge_engine.model.verdict_math import LABELS
from judge_engine.training import calibration
from judge_engine.model.novelty import NoveltyIndex, item_matrix
from judge_engine.training.embedding_cache import DEFAULT_PATH, EmbeddingCache, sentence_namespace
from judge_engine.training.finetune import FinetuneConfig, finetune

KINDS = ("pairwise", "pointwise")
MIN_STEPS = 10


@dataclass(frozen=True)
class TrainConfig:
    gold: tuple[Path, ...]
    out: Path
    teacher: str | tuple[str, ...] = "gpt-4"  # several: in order of preference
    arch: str = "bi"  # "cross": answers encoded jointly with the question
    fallback_human: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 13
    swap: bool = True
    reference_drop: bool = True
    epochs: int = 60
    patience: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.1
    batch_size: int = 64
    hidden: int = 256
    dropout: float = 0.5
    max_length: int = 256
    encoder_layers: int = ENCODER_DEPTH  # the first N of the encoder's layers (fewer: cheaper per token, issue 13)
    finetune_layers: int = 0
    finetune_epochs: int = 2
    finetune_lr: float = 3e-5
    limit_per_file: int | None = None
    sample_per_file: int | None = None
    length_balance: bool = False
    skip_invalid: bool = False
    cache: Path = DEFAULT_PATH
    novelty_k: int = 10
    novelty_percentile: float = 99.0
    progress: bool = True


@dataclass
class TrainResult:
    model_dir: Path
    counts: dict
    test: dict
    temperature: dict
    seconds: dict = field(default_factory=dict)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _bar(total: int | None, desc: str, enabled: bool, unit: str = "text"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=False)


def targets(examples: list[Example]) -> np.ndarray:
    """[n, classes] float32 target distributions (soft where the teacher gave one, else one-hot)."""
    return np.array([e.target for e in examples], dtype=np.float32)


def _features(kind: str, examples: list[Example], v, cross: bool) -> tuple[np.ndarray, np.ndarray]:
    items = [e.item for e in examples]
    x = pair_features(items, v, cross=cross) if kind == "pairwise" else point_features(items, v, cross)
    return x, targets(examples)


def _fit_head(head: nn.Module, train: tuple, val: tuple, cfg: TrainConfig, desc: str) -> dict:
    """Mini-batch AdamW on cached features; keeps the weights of the epoch with the lowest validation loss."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    vx, vy = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    # unweighted: the probabilities must keep the label prior, or the confidence routing relies on is biased
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, stale, epoch = float("inf"), None, 0, 0
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=not cfg.progress, file=sys.stderr, leave=False)
    for epoch in bar:
        head.train()
        # at least MIN_STEPS updates per epoch, so a small dataset is not under-trained by a handful of steps
        passes = max(1, -(-MIN_STEPS * cfg.batch_size // len(y)))
        order = torch.cat([torch.randperm(len(y)) for _ in range(passes)])
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad()
            loss_fn(head(x[idx]), y[idx]).backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(head(vx), vy)) if len(vy) else 0.0
        bar.set_postfix(val_loss=f"{val_loss:.4f}")
        if val_loss < best - 1e-4:
            best, stale = val_loss, 0
            best_state = {k: t.clone() for k, t in head.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return {"epochs_run": epoch + 1, "best_val_loss": best}


def _calibration_logits(heads: StudentHeads, kind: str, examples: list[Example], v) -> np.ndarray:
    items = [e.item for e in examples]
    if kind == "pairwise":
        return heads.pairwise_logits(items, v)[0]
    return heads.logits(kind, point_features(items, v, heads.cross))


def _validation_evidence(heads: StudentHeads, kind: str, examples: list[Example], v, source_of: dict) -> list[dict]:
    """The calibrated judge's verdicts on the validation split beside their training labels: the evidence a new
    deployment of this version starts its routing policy from (``judge_engine.online.policy.validation_evidence``)."""
    verdicts = heads.judge_vectors([e.item for e in examples], v)
    return [{"app": source_of.get(e.source_id, "gold")[:128] or "gold", "kind": kind, "criterion": e.item["criterion"],
             "label": d["label"], "confidence": round(float(d["confidence"]), 6), "reference": e.label,
             "reference_source": e.label_source} for e, d in zip(examples, verdicts)]


def _measure(heads: StudentHeads, kind: str, examples: list[Example], v) -> dict:
    """Held-out metrics for one kind: agreement with the training label and with humans, ECE, swap consistency."""
    items = [e.item for e in examples]
    verdicts = heads.judge_vectors(items, v)
    pred = [d["label"] for d in verdicts]
    conf = [d["confidence"] for d in verdicts]
    target = [e.label for e in examples]
    human = [e.human_label for e in examples]
    raw_conf = calibration.confidences(_calibration_logits(heads, kind, examples, v))[1]
    correct = [p == t for p, t in zip(pred, target)]
    return {
        "n": len(examples),
        "accuracy_vs_training_label": metrics.accuracy(pred, target),
        "label_sources": dict(Counter(e.label_source for e in examples)),
        "accuracy_vs_human": metrics.accuracy(pred, human),
        "kappa_vs_human": metrics.cohen_kappa(pred, human, LABELS[kind]),
        "macro_f1_vs_human": metrics.macro_f1(pred, human, LABELS[kind]),
        "training_label_accuracy_vs_human": metrics.accuracy(target, human),
        "majority_baseline_vs_human": metrics.accuracy([Counter(human).most_common(1)[0][0]] * len(human), human),
        "swap_consistency": float(np.mean([d["swap_consistent"] for d in verdicts])),
        "ece_uncalibrated": metrics.expected_calibration_error([float(c) for c in raw_conf], correct),
        "ece": metrics.expected_calibration_error(conf, correct),
        "reliability": {
            "uncalibrated": metrics.reliability_bins([float(c) for c in raw_conf], correct),
            "calibrated": metrics.reliability_bins(conf, correct),
        },
    }


def train(cfg: TrainConfig, log=print) -> TrainResult:
    if cfg.arch not in ARCHS:
        raise ValueError(f"--arch must be one of {', '.join(ARCHS)} (got {cfg.arch!r})")
    check_layers(cfg.encoder_layers)
    if cfg.finetune_layers > cfg.encoder_layers:
        raise ValueError(f"--finetune-layers {cfg.finetune_layers} is more than the encoder's {cfg.encoder_layers} "
                         "layers (--encoder-layers); fine-tune at most that many")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with _bar(None, "reading gold files", cfg.progress, unit="line") as bar:
        loaded = load_gold(cfg.gold, skip_invalid=cfg.skip_invalid, sample_per_file=cfg.sample_per_file,
                           seed=cfg.seed, progress=bar.update)
    items = loaded.items
    if cfg.limit_per_file:
        by_source: dict[str, int] = {}
        kept = []
        for it in items:
            by_source[it.source] = by_source.get(it.source, 0) + 1
            if by_source[it.source] <= cfg.limit_per_file:
                kept.append(it)
        items = kept
    teachers = teachers_of(cfg.teacher)
    label_name = "human" if teachers == ("human",) else " / ".join(f"teacher:{t}" for t in teachers)
    examples, report = label_examples(items, teachers, cfg.fallback_human)
    for reason, n in report.skipped.items():
        log(f"  left out {n} item(s): {reason}")
    if not examples:
        raise ValueError(
            f"no item in {', '.join(map(str, cfg.gold))} has a {label_name} label; choose another --teacher "
            "or pass --fallback-human"
        )
    balance = None
    if cfg.length_balance:
        examples, balance = length_balance(examples, cfg.seed)
        log(f"  length balance: {json.dumps(balance)}")
    parts = split(examples, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    train_aug = augment(parts["train"], swap=cfg.swap, reference_drop=cfg.reference_drop)
    val_aug = augment(parts["val"], swap=cfg.swap, reference_drop=cfg.reference_drop)
    counts = {
        name: {k: sum(e.item["kind"] == k for e in rows) for k in KINDS}
        for name, rows in (("train", parts["train"]), ("train_augmented", train_aug), ("val", parts["val"]),
                           ("test", parts["test"]))
    }
    log(f"  examples: {json.dumps(counts)}; labels from {dict(report.used)} ({report.soft} soft targets)")

    encoder = Encoder(max_length=cfg.max_length, layers=cfg.encoder_layers)
    cache = EmbeddingCache(cfg.cache, namespace=sentence_namespace(cfg.max_length, cfg.encoder_layers))
    texts = [t for e in examples for t in texts_of(e.item, cfg.arch == "cross")]
    with _bar(len(set(texts)), "encoding texts (cached after the first run)", cfg.progress) as bar:
        vectors, encoded = cache.vectors(texts, encoder.encode, progress=bar.update)
    cache.close()
    timings["encode_s"] = round(time.perf_counter() - started, 1)
    log(f"  {len(vectors)} distinct texts, {encoded} newly encoded, in {timings['encode_s']} s")

    torch.manual_seed(cfg.seed)  # the heads' initial weights: one config trains one model, whatever ran before it
    heads = StudentHeads(hidden=cfg.hidden, dropout=cfg.dropout, arch=cfg.arch)
    trained: dict[str, dict] = {}
    test: dict[str, dict] = {}
    t0 = time.perf_counter()
    for kind in KINDS:
        train_k = [e for e in train_aug if e.item["kind"] == kind]
        val_k = [e for e in val_aug if e.item["kind"] == kind]
        if not train_k:
            continue
        if not val_k:
            raise ValueError(f"no {kind} item fell in the validation split; use more data or a larger --val")
        trained[kind] = _fit_head(heads.head(kind), _features(kind, train_k, vectors, heads.cross),
                                  _features(kind, val_k, vectors, heads.cross), cfg, f"training the {kind} head")
    timings["heads_s"] = round(time.perf_counter() - t0, 1)

    encoder_top = None
    finetuned: dict = {}
    if cfg.finetune_layers:
        kinds = [e for e in train_aug if e.item["kind"] in trained], [e for e in val_aug if e.item["kind"] in trained]
        result = finetune(encoder, heads, texts, *kinds, FinetuneConfig(
            layers=cfg.finetune_layers, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, seed=cfg.seed,
            progress=cfg.progress, cache=cfg.cache), log=log)
        encoder_top, finetuned = result.top_state, result.report
        vectors = result.vectors if result.vectors is not None else vectors
        timings["finetune_s"] = finetuned["total_s"]

    source_of = {it.id: it.source for it in items}
    validation: list[dict] = []
    for kind, fit in trained.items():
        val_plain = [e for e in parts["val"] if e.item["kind"] == kind]
        logits = _calibration_logits(heads, kind, val_plain, vectors)
        hard = np.array([LABELS[kind].index(e.label) for e in val_plain])
        heads.temperature[kind] = calibration.fit_temperature(logits, hard)
        fit["val_nll_before"] = calibration.nll(logits, hard, 1.0)
        fit["val_nll_after"] = calibration.nll(logits, hard, heads.temperature[kind])
        validation.extend(_validation_evidence(heads, kind, val_plain, vectors, source_of))
        test_k = [e for e in parts["test"] if e.item["kind"] == kind]
        if test_k:
            test[kind] = _measure(heads, kind, test_k, vectors)
    keyed = (lambda item, answer: answer_key(item, answer, True)) if heads.cross else None
    novelty = NoveltyIndex.build(item_matrix([e.item for e in parts["train"]], vectors, keyed),
                                 item_matrix([e.item for e in parts["val"]], vectors, keyed), cfg.novelty_k,
                                 cfg.novelty_percentile)
    timings["total_s"] = round(time.perf_counter() - started, 1)

    provenance = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "teacher": teachers[0],
        "teachers": list(teachers),
        "soft_targets": report.soft,
        "length_balance": balance,
        "sample_per_file": cfg.sample_per_file,
        "fallback_human": cfg.fallback_human,
        "label_sources": dict(report.used),
        "data": [{"path": str(Path(p).resolve()), "sha256": _sha256(Path(p))} for p in cfg.gold],
        "split": {"seed": cfg.seed, "val": cfg.val_fraction, "test": cfg.test_fraction, "by": "question"},
        "counts": counts,
        "trained_kinds": sorted(trained),
        "training": trained,
        "finetune": finetuned,
        "max_length": cfg.max_length,
        "encoder_layers": cfg.encoder_layers,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "gold"},
        "trained_on": sorted({e.fingerprint for e in parts["train"] + parts["val"]}),
        "validation_evidence": validation,
        "novelty": {"k": novelty.k, "percentile": novelty.percentile, "threshold": round(novelty.threshold, 6),
                    "indexed_items": len(novelty.matrix)},
        "test_metrics": {k: {m: v for m, v in d.items() if m != "reliability"} for k, d in test.items()},
    }
    heads.save(cfg.out, provenance, encoder_top=encoder_top)
    novelty.save(cfg.out)
    (cfg.out / "training_report.json").write_text(json.dumps(
        {"counts": counts, "training": trained, "finetune": finetuned, "temperature": heads.temperature, "test": test,
         "seconds": timings}, indent=2, default=float))
    if test:
        series = {}
        for kind, d in test.items():
            series[f"{kind} before scaling"] = d["reliability"]["uncalibrated"]
            series[f"{kind} calibrated (T={heads.temperature[kind]:.2f})"] = d["reliability"]["calibrated"]
        plots.reliability_diagram(series, cfg.out / "reliability.png", "held-out test split: reliability")
    return TrainResult(cfg.out, counts, test, dict(heads.temperature), timings)
