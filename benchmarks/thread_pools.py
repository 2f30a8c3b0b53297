"""What a judge call's thread pools cost: the judge with its side work on one thread, and without, taking turns.

Contract:
- ``python -m benchmarks.thread_pools [--model DIR] [--runtimes onnx-int8,onnx-fp32,torch] [--sizes 64,16,1]``
  judges the same real pairwise items in process (``benchmarks.judge_variants.sweep``: the same items, judge,
  rounds in turns and table) four ways, the first the baseline of the ratios:
  - ``before``: every pool as it was until the thirteenth session: numpy's BLAS and torch on the caller's threads
    during the call, and more than ``student.SERIAL_TEXTS`` texts tokenised in one parallel batch call;
  - ``serial``: only the tokenising one text at a time (``Encoder.serial_texts``, the CPU default now);
  - ``pools``: only the scoped pools (``Judge.pools``: ``judge_engine.model.thread_pools``, numpy's BLAS on one
    thread and, with the ONNX Runtime encoder, torch too);
  - ``now``: both, what the judge does on the CPU.
  The four regroup nothing and compute the same numbers (the same embeddings; tests in
  ``tests/judge_engine/model/``), so only time is at stake.
- Results: a printed table and ``bench-results/thread_pools.json`` with the ``machine``: what competing pools cost
  depends on the cores there are to share. Not part of ``make bench``: it measures a default, not a goal.
"""

from __future__ import annotations

import contextlib
import functools

from benchmarks.judge_variants import sweep, sweep_parser

VARIANTS = ("before", "serial", "pools", "now")


@contextlib.contextmanager
def _variant(judge, name: str):
    from judge_engine.model.student import SERIAL_TEXTS

    pools, serial = judge.pools, judge.encoder.serial_texts
    if name in ("before", "serial"):
        judge.pools = contextlib.nullcontext()
    if name in ("before", "pools"):
        judge.encoder.serial_texts = SERIAL_TEXTS
    try:
        yield
    finally:
        judge.pools, judge.encoder.serial_texts = pools, serial


def variants(judge) -> dict:
    """The four ways, each a context manager that sets the judge up and gives it its own settings back."""
    return {name: functools.partial(_variant, judge, name) for name in VARIANTS}


def main() -> None:
    args = sweep_parser(__doc__.split("\n")[0], "onnx-int8,onnx-fp32,torch").parse_args()
    sweep(args, "thread_pools", "variants", variants, {"variants": list(VARIANTS)})


if __name__ == "__main__":
    main()
