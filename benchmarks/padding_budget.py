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
- The timing, the table and the JSON are ``benchmarks.judge_variants``' (shared with ``benchmarks.thread_pools``).
"""

from __future__ import annotations

import contextlib
import functools

from benchmarks.judge_variants import compare_variants, sweep, sweep_parser


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


def main() -> None:
    parser = sweep_parser(__doc__.split("\n")[0], "onnx-int8,onnx-fp32")
    parser.add_argument("--budgets", default="0.25,0.1,0.05", help="the first is the baseline of the ratios")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    if any(not b >= 0 for b in budgets):
        parser.error(f"--budgets must be shares >= 0 (got {args.budgets})")
    sweep(args, "padding_budget", "budgets", lambda judge: _budgets(judge, budgets), {"budgets": budgets})


if __name__ == "__main__":
    main()
