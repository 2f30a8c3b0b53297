"""Fine-tune the encoder's top layers together with the trained heads (``judgeline train --finetune-layers K``).

Contract:
- Input: the frozen ``Encoder``, heads already fitted on frozen embeddings (stage one of ``training.train``: a
  linear-probe-then-fine-tune schedule, so the new layers start from a working head rather than a random one),
  every text of the examples, and the augmented train / validation examples with their labels.
- The hidden states entering the last ``K`` layers are computed once per text (float16, padding dropped; about
  0.8 KB per token) and kept in the embedding cache (``embedding_cache``, its own namespace), so each step runs only those ``K`` layers forward and backward over the distinct texts of
  the batch. A batch holds whole items: every augmented variant of an item (both answer orders, reference drop)
  shares its texts, so it costs one forward of them.
- An epoch is a fresh random subset of at most ``items_per_epoch`` train items (all of them on small sets), which
  bounds the time of an epoch on large sets.
- Both heads and the shared layers train together (AdamW; the layers at ``lr``, the heads at ``head_lr``), one
  mixed batch of pairwise and pointwise items at a time, loss weighted by the examples of each kind.
- Validation loss (the same loss, dropout off) is measured before the first epoch and after each; the weights of
  the best point are kept, the frozen starting point included, so fine-tuning never leaves the judge worse on
  validation than the frozen one; ``epochs_kept`` says which won (0: the frozen encoder).
- Output: the text -> embedding mapping under the kept weights (what the temperature is then fitted on and the
  test split measured with) and the state of the kept layers (``student.top_layers_state``, saved as
  ``encoder_top.pt``), both None when the frozen point won (the heads are then back at their frozen-point
  weights, and the caller's frozen embeddings stand), and a report (losses per epoch, seconds).
"""

from __future__ import annotations

import copy
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from judge_engine.dataset import Example
from judge_engine.model.student import (
    EMBED_DIM,
    Encoder,
    StudentHeads,
    load_top_layers,
    pair_inputs,
    point_inputs,
    texts_of,
    top_layers_state,
)
from judge_engine.training.embedding_cache import DEFAULT_PATH, EmbeddingCache, sentence_namespace

KINDS = ("pairwise", "pointwise")


@dataclass(frozen=True)
class FinetuneConfig:
    layers: int = 1
    epochs: int = 2
    lr: float = 3e-5
    head_lr: float = 1e-4
    weight_decay: float = 0.01
    items_per_batch: int = 16
    items_per_epoch: int = 1200  # a fresh random subset each epoch bounds the time on large sets
    seed: int = 13
    progress: bool = True
    cache: Path = DEFAULT_PATH


@dataclass
class FinetuneResult:
    vectors: dict[str, np.ndarray] | None  # None when the frozen point won: the frozen embeddings stand
    top_state: dict[str, torch.Tensor] | None
    report: dict


def _loss(heads: StudentHeads, examples: list[Example], v) -> torch.Tensor:
    """Cross-entropy over a mixed batch, each kind through its own head, weighted by its share of the batch."""
    total = torch.zeros(())
    for kind in KINDS:
        chosen = [e for e in examples if e.item["kind"] == kind]
        if not chosen:
            continue
        items = [e.item for e in chosen]
        x = pair_inputs(items, v, cross=heads.cross) if kind == "pairwise" else point_inputs(items, v, heads.cross)
        y = torch.tensor([e.target for e in chosen], dtype=torch.float32)  # soft or one-hot
        total = total + nn.functional.cross_entropy(heads.head(kind)(x), y) * len(chosen) / len(examples)
    return total


def _embed(encoder: Encoder, layers, states: dict[str, np.ndarray], texts: list[str]) -> dict[str, torch.Tensor]:
    """{text: embedding} for ``texts`` through ``layers``, without gradients."""
    unique = list(dict.fromkeys(texts))
    with torch.no_grad():
        return dict(zip(unique, encoder.top([states[t] for t in unique], layers)))


def _batches(examples: list[Example], cfg: FinetuneConfig, rng: random.Random) -> list[list[Example]]:
    """Batches of whole items (all augmented variants of an item together), at most ``items_per_epoch`` items."""
    by_item: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_item[e.source_id].append(e)
    groups = list(by_item.values())
    rng.shuffle(groups)
    groups = groups[: cfg.items_per_epoch]
    return [sum(groups[i : i + cfg.items_per_batch], []) for i in range(0, len(groups), cfg.items_per_batch)]


def finetune(encoder: Encoder, heads: StudentHeads, texts: list[str], train: list[Example], val: list[Example],
             cfg: FinetuneConfig, log: Callable[[str], None] = print) -> FinetuneResult:
    from tqdm import tqdm

    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    unique = list(dict.fromkeys(texts))
    namespace = f"{sentence_namespace(encoder.max_length, encoder.depth)}|below-top-{cfg.layers}"
    cache = EmbeddingCache(cfg.cache, namespace=namespace, dtype=np.float16, width=EMBED_DIM)
    with tqdm(total=len(unique), desc=f"hidden states below the top {cfg.layers} layer(s) (cached)", unit="text",
              disable=not cfg.progress, file=sys.stderr, leave=False) as bar:
        states, fresh = cache.vectors(unique, lambda chunk, progress: encoder.lower_states(chunk, cfg.layers, progress),
                                      progress=bar.update)
    cache.close()
    states_s = time.perf_counter() - started
    log(f"  fine-tuning the top {cfg.layers} encoder layer(s): hidden states of {len(unique)} texts "
        f"({fresh} newly computed) in {states_s:.0f} s")

    layers = copy.deepcopy(encoder.layers[-cfg.layers:])
    for p in layers.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW([
        {"params": layers.parameters(), "lr": cfg.lr},
        {"params": heads.parameters(), "lr": cfg.head_lr},
    ], weight_decay=cfg.weight_decay)
    val_texts = [t for e in val for t in texts_of(e.item, heads.cross)]

    def val_loss() -> float:
        layers.eval()
        heads.eval()
        with torch.no_grad():
            return float(_loss(heads, val, _embed(encoder, layers, states, val_texts)))

    def snapshot() -> tuple[dict, dict]:
        return top_layers_state(layers), copy.deepcopy(heads.state_dict())

    losses = [val_loss()]
    best, best_epoch, best_state = losses[0], 0, snapshot()
    train_losses: list[float] = []
    for epoch in range(1, cfg.epochs + 1):
        batches = _batches(train, cfg, rng)
        layers.train()
        heads.train()
        running = []
        for batch in tqdm(batches, desc=f"fine-tuning epoch {epoch}/{cfg.epochs}", unit="batch",
                          disable=not cfg.progress, file=sys.stderr, leave=False):
            batch_texts = list(dict.fromkeys(t for e in batch for t in texts_of(e.item, heads.cross)))
            v = dict(zip(batch_texts, encoder.top([states[t] for t in batch_texts], layers)))
            opt.zero_grad()
            loss = _loss(heads, batch, v)
            loss.backward()
            opt.step()
            running.append(float(loss.detach()))
        train_losses.append(float(np.mean(running)))
        losses.append(val_loss())
        log(f"  epoch {epoch}: train loss {train_losses[-1]:.4f}, validation loss {losses[-1]:.4f} "
            f"(frozen encoder: {losses[0]:.4f})")
        if losses[-1] < best - 1e-4:
            best, best_epoch, best_state = losses[-1], epoch, snapshot()

    load_top_layers(layers, best_state[0])
    heads.load_state_dict(best_state[1])
    heads.eval()
    layers.eval()
    vectors = {t: e.numpy() for t, e in _embed(encoder, layers, states, unique).items()} if best_epoch else None
    report = {
        "layers": cfg.layers,
        "epochs": cfg.epochs,
        "epochs_kept": best_epoch,
        "val_loss_by_epoch": losses,
        "train_loss_by_epoch": train_losses,
        "lr": cfg.lr,
        "head_lr": cfg.head_lr,
        "texts": len(unique),
        "tokens": int(sum(len(s) for s in states.values())),
        "states_computed": fresh,
        "states_s": round(states_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }
    return FinetuneResult(vectors, best_state[0] if best_epoch else None, report)
