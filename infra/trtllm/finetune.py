"""Fine-tune an instruct causal LM (Qwen2.5-0.5B/1.5B-Instruct class) into the generative judge: one verdict token.

Contract (torch + transformers; run from the repository root on a GPU machine, see infra/trtllm/README.md):
- Data: gold-format JSON Lines (``../shared/docs/gold-format.md``); the label is ``human_label`` or, with
  ``--teacher NAME``, ``teacher[NAME]``; items without that label are skipped. ``examples_from_gold`` turns lines
  into the example dicts of ``judge_engine.model.generative.sft_record``; ``augment`` is the caller's part that record
  leaves out: every pairwise example also appears with its answers swapped (label A<->B, tie stays), and an
  example with a reference loses it with probability ``reference_drop`` (so the judge works without one).
- Each example is encoded exactly as the Triton preprocessing encodes a request (``generative.prompt_ids`` with
  the same ``max_input_len``), and the loss is the cross-entropy of the next token at the prompt's last position
  against the verdict word's token (``generative.verdict_token_ids``): the position whose logits TensorRT-LLM
  returns as the first generation logits.
- ``--eval FILE``: both orders of every pairwise item scored and combined with ``generative.combine_planned``
  (the serving path), accuracy and swap consistency reported; ``fit_temperature`` picks, per kind, the
  temperature minimising the negative log-likelihood of the combined logits, written to ``calibration.json``
  (``build.sh`` fills the Triton ``temperature_*`` parameters from it).
- Output ``--out DIR``: the model (bf16 safetensors) and tokenizer, loadable by TensorRT-LLM's
  ``convert_checkpoint.py``, plus ``judge_meta.json`` (base model, verdict words and token ids, label source,
  evaluation) and ``calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))  # the repository root
from judge_engine.model import generative, verdict_math  # noqa: E402

SWAP_LABEL = {"A": "B", "B": "A", "tie": "tie"}


def examples_from_gold(lines, teacher: str | None = None) -> list[dict]:
    """Example dicts (``sft_record``'s keys) from gold-format records; unlabelled ones are skipped."""
    out = []
    for record in lines:
        label = (record.get("teacher") or {}).get(teacher) if teacher else record.get("human_label")
        if label is None:
            continue
        out.append(
            {
                "kind": record["kind"],
                "criterion": record.get("criterion") or "overall",
                "question": record["question"],
                "answer_a": record.get("answer_a"),
                "answer_b": record.get("answer_b"),
                "answer": record.get("answer"),
                "reference": record.get("reference"),
                "label": label,
            }
        )
    return out


def read_jsonl(paths) -> list[dict]:
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            records.extend(json.loads(line) for line in f if line.strip())
    return records


def augment(examples: list[dict], swap: bool = True, reference_drop: float = 0.0, seed: int = 0) -> list[dict]:
    """Swap augmentation (pairwise, both orders) and reference dropping (probability ``reference_drop``)."""
    rng = random.Random(seed)
    out = []
    for ex in examples:
        variants = [dict(ex)]
        if swap and ex["kind"] == "pairwise":
            variants.append(dict(ex, answer_a=ex["answer_b"], answer_b=ex["answer_a"], label=SWAP_LABEL[ex["label"]]))
        for v in variants:
            if v.get("reference") and rng.random() < reference_drop:
                v["reference"] = None
            out.append(v)
    return out


def encode(tokenizer, example: dict, max_input_len: int) -> tuple[list[int], int]:
    """(prompt token ids, target token id) exactly as served: the prompt of the Triton preprocessing step."""
    record = generative.sft_record(example)
    item = generative.judge_input_from_example(example)
    ids = generative.prompt_ids(tokenizer, item, max_input_len)
    words = generative.VERDICT_WORDS[item.kind]
    target = int(generative.verdict_token_ids(tokenizer, item.kind)[words.index(record["target"])])
    return ids, target


def batches(encoded: list[tuple[list[int], int]], batch_size: int, seed: int):
    """Length-bucketed batches (little padding), in a shuffled order."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(seed).shuffle(groups)
    return groups


def last_position_logits(model, input_ids, attention_mask, lengths):
    """Next-token logits at each row's last prompt token (right padding), without the full [B, T, V] tensor."""
    import torch

    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    return model.get_output_embeddings()(hidden[rows, lengths - 1]).float()


def collate(encoded, index, pad_id, device):
    import torch

    rows = [encoded[i] for i in index]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, _) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
    lengths = torch.tensor([len(ids) for ids, _ in rows])
    targets = torch.tensor([t for _, t in rows])
    return input_ids.to(device), mask.to(device), lengths.to(device), targets.to(device)


def train(
    model,
    tokenizer,
    examples,
    *,
    epochs=1,
    batch_size=8,
    grad_accum=1,
    lr=1e-5,
    max_input_len=2048,
    warmup=0.03,
    seed=0,
    device="cpu",
    autocast_dtype=None,
    log=print,
) -> list[float]:
    """Fine-tune ``model`` in place on ``examples`` (already augmented); returns the loss of every step."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    encoded = [encode(tokenizer, ex, max_input_len) for ex in examples]
    _, pad_id = generative.special_token_ids(tokenizer)
    steps = math.ceil(len(batches(encoded, batch_size, seed)) / grad_accum) * epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(warmup * steps), max(steps, 1))
    model.train()
    losses, started = [], time.time()
    for epoch in range(epochs):
        groups = batches(encoded, batch_size, seed + epoch)
        for g, index in enumerate(groups):
            input_ids, mask, lengths, targets = collate(encoded, index, pad_id, device)
            with torch.autocast(
                device_type=device.split(":")[0], dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                logits = last_position_logits(model, input_ids, mask, lengths)
            loss = torch.nn.functional.cross_entropy(logits, targets)
            (loss / grad_accum).backward()
            if (g + 1) % grad_accum == 0 or g + 1 == len(groups):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if len(losses) % 50 == 0:
                log(f"epoch {epoch} step {len(losses)} loss {np.mean(losses[-50:]):.4f} ({time.time() - started:.0f}s)")
    return losses


def score(model, tokenizer, items, *, batch_size=16, max_input_len=2048, device="cpu", autocast_dtype=None):
    """Per-label logits of every planned prompt (``generative.expand_orders``) of ``items``: the serving path."""
    import torch

    plan = generative.expand_orders(items)
    ids = {kind: generative.verdict_token_ids(tokenizer, kind) for kind in generative.LABELS}
    encoded = [(generative.prompt_ids(tokenizer, p.item, max_input_len), 0) for p in plan]
    _, pad_id = generative.special_token_ids(tokenizer)
    out = [None] * len(plan)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(plan), batch_size):
            index = list(range(start, min(start + batch_size, len(plan))))
            input_ids, mask, lengths, _ = collate(encoded, index, pad_id, device)
            with torch.autocast(
                device_type=device.split(":")[0], dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                rows = last_position_logits(model, input_ids, mask, lengths).cpu().numpy()
            for i, row in zip(index, rows):
                out[i] = generative.verdict_logits(row, ids[plan[i].item.kind])
    return plan, out


def combined_logits(items, plan, logits) -> list[np.ndarray]:
    """Order-combined logits per item (pairwise: ``verdict_math.combine_orders``; pointwise as scored)."""
    got = [{} for _ in items]
    for p, z in zip(plan, logits):
        got[p.index][p.swapped] = np.asarray(z, dtype=np.float64)
    out = []
    for item, g in zip(items, got):
        if item.kind == "pairwise":
            out.append(verdict_math.combine_orders(g[False][None, :], g[True][None, :])[0][0])
        else:
            out.append(g[False])
    return out


def fit_temperature(logits: np.ndarray, labels: list[int], grid=None) -> float:
    """The temperature (from ``grid``) minimising the mean negative log-likelihood of ``labels``."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241)) if grid is None else np.asarray(grid)
    best, best_nll = 1.0, math.inf
    for t in grid:
        p = verdict_math.softmax(z / t)[np.arange(len(y)), y]
        nll = float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


def evaluate(model, tokenizer, examples, **kw) -> tuple[dict, dict]:
    """(metrics per kind, fitted temperature per kind) on ``examples``, both orders combined as served."""
    items = [generative.judge_input_from_example(ex) for ex in examples]
    plan, logits = score(model, tokenizer, items, **kw)
    combined = combined_logits(items, plan, logits)
    temperatures = {}
    for kind in generative.LABELS:
        idx = [i for i, it in enumerate(items) if it.kind == kind]
        if idx:
            y = [generative.LABELS[kind].index(examples[i]["label"]) for i in idx]
            temperatures[kind] = fit_temperature(np.stack([combined[i] for i in idx]), y)
    verdicts = generative.combine_planned(items, plan, logits, temperatures)
    metrics = {}
    for kind, t in temperatures.items():
        idx = [i for i, it in enumerate(items) if it.kind == kind]
        metrics[kind] = {
            "n": len(idx),
            "accuracy": float(np.mean([verdicts[i]["label"] == examples[i]["label"] for i in idx])),
            "swap_consistency": float(np.mean([verdicts[i]["swap_consistent"] for i in idx])),
            "temperature": t,
        }
    return metrics, temperatures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True, help="HF id or local dir, e.g. Qwen/Qwen2.5-1.5B-Instruct")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir or id (default: the base model's)")
    parser.add_argument("--train", nargs="+", required=True, help="gold-format JSONL files")
    parser.add_argument("--eval", nargs="*", default=[], help="gold-format JSONL files held out for evaluation")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--teacher", default=None, help="train on teacher[NAME] instead of human_label")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--max-input-len", type=int, default=2048, help="the same value as the engine's")
    parser.add_argument("--reference-drop", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    autocast = torch.bfloat16 if device == "cuda" else None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.base_model)
    ids = {kind: generative.verdict_token_ids(tokenizer, kind).tolist() for kind in generative.LABELS}
    model = AutoModelForCausalLM.from_pretrained(args.base_model, torch_dtype=torch.float32).to(device)
    examples = augment(
        examples_from_gold(read_jsonl(args.train), args.teacher), reference_drop=args.reference_drop, seed=args.seed
    )
    print(f"training on {len(examples)} examples (swap-augmented) on {device}")
    losses = train(
        model,
        tokenizer,
        examples,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        max_input_len=args.max_input_len,
        seed=args.seed,
        device=device,
        autocast_dtype=autocast,
    )
    metrics, temperatures = {}, {kind: 1.0 for kind in generative.LABELS}
    if args.eval:
        held_out = examples_from_gold(read_jsonl(args.eval), args.teacher)
        metrics, fitted = evaluate(
            model, tokenizer, held_out, max_input_len=args.max_input_len, device=device, autocast_dtype=autocast
        )
        temperatures.update(fitted)
        print(json.dumps(metrics, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    (args.out / "calibration.json").write_text(json.dumps(temperatures, indent=2))
    meta = {
        "base_model": args.base_model,
        "verdict_words": generative.VERDICT_WORDS,
        "verdict_token_ids": ids,
        "label_source": f"teacher:{args.teacher}" if args.teacher else "human_label",
        "max_input_len": args.max_input_len,
        "train_files": args.train,
        "examples": len(examples),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "eval": metrics,
    }
    (args.out / "judge_meta.json").write_text(json.dumps(meta, indent=2))
    print(f"saved the judge to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
