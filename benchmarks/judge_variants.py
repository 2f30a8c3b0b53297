"""Judge variants timed against each other: the machinery of ``benchmarks.padding_budget`` and
``benchmarks.thread_pools``.

Contract:
- ``compare_variants(judge, batches, variants, rounds)``: ``variants`` maps a name to a callable returning a context
  manager that sets the judge up that way and gives it its own settings back on leaving. One pass over ``batches``
  per variant first (its shape: encoder calls and FLOPs counted as ``benchmarks.judge_roofline`` counts them; also
  the warm-up), then ``rounds`` rounds in which the variants take turns, one whole pass each, so a load that changes
  during the run falls on every variant alike. Per variant: median and best ms per item, the median as a ratio of
  the first variant's, the encoder calls per pass, the padded share of the FLOPs, and the median pass's GFLOP/s for
  every position computed and for the unpadded ones alone.
- ``sweep_parser``/``sweep(args, name, key, variants_of, extra)``: the same real pairwise items
  (``benchmarks.judge``'s) for each runtime (``--runtimes``: ``torch``, ``onnx-fp32``, ``onnx-int8``, each prepared
  from ``--model`` or the judge ``benchmarks.judge`` trains, in a private directory) and batch size (``--sizes``),
  each row printed as it is measured and all of them in ``bench-results/<name>.json`` with the ``machine``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable, ContextManager

from benchmarks import machine
from benchmarks.judge import OUT, _items, _model
from benchmarks.judge_roofline import FlopCounter


def _pass(judge, batches: list[list[dict]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        judge.judge(batch)
    return time.perf_counter() - started


def _shape(judge, batches: list[list[dict]]) -> dict:
    """One pass as the judge stands: its encoder calls and FLOPs (``judge_roofline.FlopCounter``: every position
    computed, and the unpadded ones alone)."""
    counter = FlopCounter(judge.encoder)
    try:
        _pass(judge, batches)
    finally:
        counter.close()
    return {"encoder_calls": counter.calls, "gflop": counter.flops / 1e9, "useful_gflop": counter.useful / 1e9}


def compare_variants(judge, batches: list[list[dict]], variants: dict[str, Callable[[], ContextManager]],
                     rounds: int) -> dict:
    """Per variant (a name and a context manager that sets the judge up that way and back): ms per item (median,
    best) over ``rounds`` passes taken in turns, the median as a ratio of the first variant's, and the batches'
    shape (``_shape``) with the rates it gives."""
    items = sum(len(b) for b in batches)
    shapes, seconds = {}, {name: [] for name in variants}
    for name, variant in variants.items():
        with variant():
            shapes[name] = _shape(judge, batches)  # also the warm-up
    for _ in range(rounds):
        for name, variant in variants.items():
            with variant():
                seconds[name].append(_pass(judge, batches))
    first = statistics.median(next(iter(seconds.values())))
    out = {}
    for name, s in seconds.items():
        median, shape = statistics.median(s), shapes[name]
        out[name] = {"median_ms_per_item": round(1000 * median / items, 2),
                     "best_ms_per_item": round(1000 * min(s) / items, 2),
                     "median_vs_first": round(median / first, 3), "encoder_calls": shape["encoder_calls"],
                     "padding_share": round(1 - shape["useful_gflop"] / shape["gflop"], 3),
                     "gflops": round(shape["gflop"] / median, 1),
                     "useful_gflops": round(shape["useful_gflop"] / median, 1)}
    return out


def _judge(model: Path, runtime: str, work: Path, threads: int):
    from judge_engine.model.student import Judge
    from judge_engine.training.export import prepare

    if runtime == "torch":
        return Judge(model, threads=threads)
    kind, _, precision = runtime.partition("-")
    return Judge(prepare(model, work / runtime, kind, precision or "fp32"), threads=threads)


def sweep_parser(description: str, runtimes: str) -> argparse.ArgumentParser:
    """The arguments ``sweep`` reads (a comparison adds its own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", help="trained judge directory (default: the one benchmarks.judge trains)")
    parser.add_argument("--runtimes", default=runtimes, help="torch, onnx-fp32, onnx-int8")
    parser.add_argument("--sizes", default="64,16,1", help="items per judge call")
    parser.add_argument("--items", type=int, default=128, help="items per pass at batch sizes above 1")
    parser.add_argument("--single-items", type=int, default=24, help="items per pass at batch 1")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def sweep(args, name: str, key: str, variants_of: Callable[[object], dict], extra: dict) -> None:
    """``compare_variants`` for each runtime (``--runtimes``) and batch size (``--sizes``) on the same items, each
    row printed as it is measured and all of them in ``bench-results/<name>.json`` (under ``key``, beside
    ``extra``); ``variants_of(judge)`` names the variants of one runtime's judge."""
    import torch

    torch.set_num_threads(args.threads)
    OUT.mkdir(exist_ok=True)
    model = _model(args)
    work = OUT / f".{name}-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    items = _items(max(args.items, args.single_items))
    rows = []
    for runtime in filter(None, args.runtimes.split(",")):
        judge = _judge(model, runtime, work, args.threads)
        for size in (int(s) for s in args.sizes.split(",")):
            n = args.items if size > 1 else args.single_items
            batches = [items[i : i + size] for i in range(0, n, size)]
            rows.append({"runtime": runtime, "batch_size": size, "items": n,
                         key: compare_variants(judge, batches, variants_of(judge), args.rounds)})
            print_row(rows[-1], key)
    result = {"benchmark": name, "machine": machine.describe(threads=args.threads), "rounds": args.rounds,
              **extra, "model": str(model), "rows": rows}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(f"machine: {machine.line(result['machine'])}; results in {OUT / f'{name}.json'}")


def print_row(row: dict, key: str) -> None:
    """One runtime and batch size: each variant of ``row[key]`` with its ms per item, ratio, calls, padding, rates."""
    cells = [f"{b}: {r['median_ms_per_item']:.2f} ms ({r['median_vs_first']:.3f}, {r['encoder_calls']} calls, "
             f"{100 * r['padding_share']:.0f} % pad, {r['gflops']}/{r['useful_gflops']} GFLOP/s)"
             for b, r in row[key].items()]
    print(f"{row['runtime']:>10} batch {row['batch_size']:>3} | " + " | ".join(cells), flush=True)
