"""Issue 13's goals read off one ``make bench`` run: one table on stdout and ``bench-results/goals.json``.

Contract:
- ``make bench`` runs this last. It reads ``judge.json`` and ``throughput.json`` from ``bench-results/``, both
  written by the same run: with ``--since EPOCH`` (the Makefile passes the second its ``bench`` target started) a
  file older than that is refused, naming the file and the fix, so a table never mixes runs. Exit status 2 then,
  or when a file is missing, is not JSON or lacks a figure; 0 otherwise, whether or not every goal is met (a
  benchmark reports, it does not fail a build).
- ``evaluate(judge, throughput)`` returns one row per goal: ``goal``, ``target``, ``measured`` (the figure, with
  the context that reads it), ``value`` (the number the verdict compares) and ``verdict``: ``met``, ``not met``, or
  ``cores allow less`` (two workers under 1.7x on a machine whose cores would carry less than that at the
  one-worker run's CPU per trace, the issue's "where cores allow", and the two workers within 0.9 of what the cores
  would carry: scaling far under the cores' own estimate is ``not met``), or ``not measured`` (a burst shorter than
  the goal's 20,000 traces, as ``benchmarks.throughput --quick`` runs).
- The figures are the ones the docs quote: the stub-judge pipeline's 1-worker burst, the two-worker ratio and the
  cores' estimate beside it, the paced run's p95 and its offered rate against the 1-worker ceiling; the ONNX
  Runtime fp32 judge at batch 64 against the run's best burst of the fp32 matmul peak (with the judge's own GFLOP/s
  and the spread of the part's bursts, which says how steady the host was: a busy minute lowers the best burst and
  flatters the fraction; and, beside it, the rate sustained next to each pass, and its rate for the unpadded tokens
  alone); ONNX int8 against ONNX fp32 at batch 64 in speed and on held-out items; the ONNX int8 judge at batch 1
  through Triton (p50). Pure reading: nothing is measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import machine as host

OUT = Path(__file__).resolve().parent.parent / "bench-results"
SOURCES = ("judge.json", "throughput.json")

PER_WORKER = 5_000.0  # traces/s, stub judge, one inline worker
BURST = 20_000  # the shortest burst the per-worker goal is read on
SCALING = 1.7  # two workers against one, where the cores allow
NEAR_CORES = 0.9  # under 1.7x, "cores allow less" only within this share of the cores' own estimate
PACED_P95_MS = 1_000.0
ROOFLINE = 0.8  # the fp32 judge against the fp32 matmul peak
INT8_LOSS_POINTS = 1.0
TRITON_P50_MS = 30.0


class GoalsError(RuntimeError):
    """A source file is missing, stale or lacks a figure; the message names the file and the fix."""


def load(out: Path = OUT, since: float | None = None) -> dict[str, dict]:
    """The source files by name; ``since``: epoch seconds the run started (older files are refused)."""
    found = {}
    for name in SOURCES:
        path = out / name
        if not path.is_file():
            raise GoalsError(f"{path} is missing: run `make bench` (it writes every file this table reads)")
        if since is not None and path.stat().st_mtime < since:
            raise GoalsError(f"{path} was written before this run started ({time.ctime(path.stat().st_mtime)}): "
                             "its benchmark failed or did not run; run `make bench` again")
        try:
            found[name] = json.loads(path.read_text())
        except ValueError as e:
            raise GoalsError(f"{path} is not JSON ({e}): its benchmark stopped while writing it; run `make bench` "
                             "again") from None
    return found


def _get(data: dict, source: str, *keys):
    for key in keys:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            raise GoalsError(f"{source} has no {'.'.join(map(str, keys))}: it comes from an older benchmark; "
                             "run `make bench` again") from None
    return data


def _row(rows: list[dict], source: str, run: str) -> dict:
    for row in rows:
        if row.get("run") == run:
            return row
    raise GoalsError(f"{source} has no run {run!r}: run `make bench` again")


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _goal(goal: str, target: str, value: float, measured: str, verdict: str) -> dict:
    return {"goal": goal, "target": target, "value": value, "measured": measured, "verdict": verdict}


def evaluate(judge: dict, throughput: dict) -> list[dict]:
    rows = _get(throughput, "throughput.json", "rows")
    one = _row(rows, "throughput.json", "burst, 1 worker")
    paced = _row(rows, "throughput.json", "paced at half the ceiling")
    burst, paced_run = "throughput.json's burst, 1 worker", "throughput.json's paced run"
    ceiling = float(_get(one, burst, "throughput_traces_per_s"))
    traces = int(_get(one, burst, "traces"))
    ratio = float(_get(throughput, "throughput.json", "two_workers_ratio"))
    cores = float(_get(throughput, "throughput.json", "two_workers_ratio_cores_estimate"))
    p95 = float(_get(paced, paced_run, "latency_ms_p95"))
    offered = float(_get(paced, paced_run, "offered_per_s"))

    fp32 = _get(judge, "judge.json", "roofline", "onnx_fp32", "batch_64")
    int8 = _get(judge, "judge.json", "roofline", "onnx_int8", "batch_64")
    held = _get(judge, "judge.json", "roofline", "held_out")
    fp32_at, int8_at = "judge.json roofline.onnx_fp32.batch_64", "judge.json roofline.onnx_int8.batch_64"
    held_at = "judge.json roofline.held_out"
    peak = float(_get(judge, "judge.json", "roofline", "fp32_matmul_peak_gflops"))
    bursts = _get(judge, "judge.json", "roofline", "peak_measurements_gflops")
    if not bursts:
        raise GoalsError("judge.json has no roofline.peak_measurements_gflops: run `make bench` again")
    rate = float(_get(fp32, fp32_at, "gflops"))
    fraction = float(_get(fp32, fp32_at, "fraction_of_peak"))
    sustained = float(_get(fp32, fp32_at, "fraction_of_sustained_peak"))
    sustained_rate = float(_get(fp32, fp32_at, "sustained_peak_gflops"))
    useful = float(_get(fp32, fp32_at, "useful_fraction_of_peak"))
    padding = float(_get(fp32, fp32_at, "padding_share"))
    speedup = float(_get(int8, int8_at, "items_per_s")) / float(_get(fp32, fp32_at, "items_per_s"))
    change = (float(_get(held, held_at, "onnx_int8", "change_points"))
              - float(_get(held, held_at, "onnx_fp32", "change_points")))
    served = [r for r in _get(judge, "judge.json", "runtime_rows")
              if r.get("variant") == "onnx_int8" and r.get("batch_size") == 1]
    if not served:
        raise GoalsError("judge.json has no ONNX int8 row at batch 1: run `make bench` (its default runtimes)")
    served_at = "judge.json's ONNX int8 row at batch 1"
    p50 = float(_get(served[0], served_at, "triton", "p50_ms"))
    in_process = _get(served[0], served_at, "in_process", "p50_ms")

    share = f"{offered / ceiling:.2f} of the 1-worker ceiling" if ceiling else "no ceiling"
    return [
        _goal("stub-judge pipeline, one inline worker", f">= {PER_WORKER:,.0f} traces/s", ceiling,
              f"{ceiling:,.0f} traces/s (a burst of {traces:,} traces)",
              "not measured" if traces < BURST else _met(ceiling >= PER_WORKER)),
        _goal("two workers on 4 partitions against one", f">= {SCALING}x where cores allow", ratio,
              f"{ratio:.2f}x; the cores would carry {cores:.2f}x",
              "met" if ratio >= SCALING else
              "cores allow less" if cores < SCALING and ratio >= NEAR_CORES * cores else "not met"),
        _goal("produce-to-stored p95 at half the ceiling", f"<= {PACED_P95_MS:,.0f} ms", p95,
              f"{p95:,.0f} ms at {offered:,.0f} traces/s offered ({share})", _met(p95 <= PACED_P95_MS)),
        _goal("judge in process (ONNX Runtime fp32, batch 64) against the fp32 matmul peak", f">= {ROOFLINE}",
              fraction, f"{fraction:.3f} of the best burst ({rate} of {peak} GFLOP/s; the part's bursts "
              f"{min(bursts)}-{max(bursts)}); {sustained:.3f} of the rate sustained beside it "
              f"({sustained_rate} GFLOP/s); without its padding ({padding:.0%} of the FLOPs) {useful:.3f} of the best "
              "burst", _met(fraction >= ROOFLINE)),
        _goal("int8 variant (ONNX Runtime int8 against fp32, batch 64)",
              f"faster, <= {INT8_LOSS_POINTS:g} point loss", speedup,
              f"{speedup:.2f}x; held out {change:+.2f} points ({_get(held, held_at, 'items')} items)",
              _met(speedup > 1.0 and change >= -INT8_LOSS_POINTS)),
        _goal("one trace through Triton on CPU at batch 1 (ONNX int8)", f"p50 <= {TRITON_P50_MS:g} ms", p50,
              f"p50 {p50} ms (in process {in_process} ms)", _met(p50 <= TRITON_P50_MS)),
    ]


def table(goals: list[dict]) -> str:
    lines = ["| issue 13 goal | target | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {g['goal']} | {g['target']} | {g['measured']} | **{g['verdict']}** |" for g in goals]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--since", type=float, help="epoch seconds this make bench started: older files are refused")
    parser.add_argument("--out", type=Path, default=OUT, help="the bench-results directory")
    args = parser.parse_args(argv)
    try:
        sources = load(args.out, args.since)
        goals = evaluate(sources["judge.json"], sources["throughput.json"])
    except GoalsError as e:
        print(f"goals: {e}", file=sys.stderr)
        return 2
    machine = sources["throughput.json"].get("machine") or sources["judge.json"].get("machine")
    result = {"benchmark": "goals", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
              "sources": list(SOURCES), "goals": goals}
    (args.out / "goals.json").write_text(json.dumps(result, indent=2))
    print(f"\nissue 13 goals, this run ({host.line(machine)}):" if machine else "\nissue 13 goals, this run:")
    print(table(goals))
    print(f"wrote {args.out / 'goals.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
