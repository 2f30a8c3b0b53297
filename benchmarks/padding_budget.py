"""What the encoder's padding budget costs: the same judge and items judged with each budget, taking turns.

Contract:
- ``python -m benchmarks.padding_budget [--model DIR] [--runtimes onnx-int8,onnx-fp32] [--budgets 0.25,0.1,0.05]
  [--sizes 64,16,1]`` judges the same real pairwise items (``benchmarks.judge``'s) in process with each padding
  budget (``student.Encoder.padding_budget``: the padded positions a text batch may add, as a share of its real
  tokens; ``student.PADDING_BUDGET`` is the default). The judge is ``--model`` or the one ``benchmarks.judge``
  trains; each runtime variant is prepared from it in a private directory (``training.export.prepare``;
  ``torch`` is the trained directory itself).
- Budgets take turns within each round (one whole pass over the batches each, ``--rounds`` rounds), so a load that
  changes during the run falls on every budget alike. Reported per runtime and batch size: each budget's median
  and best ms per item over the rounds, its median as a ratio of the first budget's, the number of encoder calls
  per pass, the padded share of its FLOPs, and the median pass's GFLOP/s counted as ``benchmarks.judge_roofline``
  counts them: for every position computed (``gflops``, what the roofline row reads) and for the unpadded ones
  alone (``useful_gflops``). The budget only regroups texts: the embeddings are the same
  (``tests/judge_engine/model/test_encoder_batches.py``), so no accuracy is at stake.
- Results: a printed table and ``bench-results/padding_budget.json`` with the ``machine``: the best budget depends on
  the cost of one encoder call against the cost of a padded position, so on the CPU and on the device.
  Not part of ``make bench``: it measures the choice of a default, not a goal.
- The machinery is shared: ``compare_variants`` times any named set of ways to set the judge up (context managers)
  the same way, and ``sweep_parser``/``sweep`` run it over runtimes and batch sizes (``benchmarks.thread_pools``
  compares the judge's thread-pool settings with them).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
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


@contextlib.contextmanager
def _budget(judge, budget: float):
    original, judge.encoder.padding_budget = judge.encoder.padding_budget, budget
    try:
        yield
    finally:
        judge.encoder.padding_budget = original


def compare(judge, batches: list[list[dict]], budgets: list[float], rounds: int) -> dict:
    """``compare_variants`` over padding budgets (keyed by the budget as text); the judge keeps its own budget."""
    return compare_variants(judge, batches, _budgets(judge, budgets), rounds)


def _budgets(judge, budgets: list[float]) -> dict:
    return {str(b): functools.partial(_budget, judge, b) for b in budgets}


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


def main() -> None:
    parser = sweep_parser(__doc__.split("\n")[0], "onnx-int8,onnx-fp32")
    parser.add_argument("--budgets", default="0.25,0.1,0.05", help="the first is the baseline of the ratios")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    if any(not b >= 0 for b in budgets):
        parser.error(f"--budgets must be shares >= 0 (got {args.budgets})")
    sweep(args, "padding_budget", "budgets", lambda judge: _budgets(judge, budgets), {"budgets": budgets})


def print_row(row: dict, key: str) -> None:
    """One runtime and batch size: each variant of ``row[key]`` with its ms per item, ratio, calls, padding, rates."""
    cells = [f"{b}: {r['median_ms_per_item']:.2f} ms ({r['median_vs_first']:.3f}, {r['encoder_calls']} calls, "
             f"{100 * r['padding_share']:.0f} % pad, {r['gflops']}/{r['useful_gflops']} GFLOP/s)"
             for b, r in row[key].items()]
    print(f"{row['runtime']:>10} batch {row['batch_size']:>3} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
