"""Judge benchmark: per-micro-batch latency and throughput of the student judge, in process and through Triton.

Contract:
- Starts its own Triton (``stack.services`` with a private state directory under ``bench-results/``), exports the
  judge into a private model repository, and stops Triton by PID at the end; touches no running stack.
- The judge is the one ``--model`` names, else one trained here with the embedded default's recipe
  (``operations.demo.default_training``: four encoder layers) on the shared pairwise sets (seconds once their
  embeddings are cached), else on the project's synthetic sample when ``../shared`` is absent.
- Items are real pairwise gold items (realistic lengths: PandaLM's questions and answers), cycled. For each batch
  size it times whole micro-batches one after another: the model in process (``student.Judge``, torch threads as
  in the Triton config), then the same batches through Triton's gRPC (``TritonJudge``). Reported: items/s,
  p50/p95 ms per batch, the server's overhead as the ratio of the p50s, and where a request's time goes inside
  Triton (``triton_server_ms``: mean queue, input, execute and output ms from Triton's own statistics over the
  batches of that size). Both run on the same cores, never at
  the same time. Results: a printed table and ``bench-results/judge.json``.
- ``--candidate DIR`` (issue 16: a cross-encoder or any other trained judge) adds, in the same run and on the same
  batches, the candidate judged in process, its items/s and the ratio of its p50 to the model's
  (``candidate_vs_model_ratio``: above 1 means slower per item).
- The encoder-runtime variants (issue 13; ``--runtimes``, default ``onnx-fp32,onnx-int8``): the same judge
  exported with ``--runtime onnx`` (and ``--quantize int8``), each served by the same Triton as a model of its own
  (``judge_onnx_fp32``, ``judge_onnx_int8``) with the same threads. At ``--runtime-batch-sizes`` (default 1 and
  64) each is timed in process and through Triton on the same batches as the torch judge, taking turns with it
  batch by batch (so a load that changes during the run falls on all alike), and reported beside it
  (``runtime_rows``: p50/p95, items/s, and ``speedup_vs_torch``, the torch judge's p50 over the variant's, in
  process and through Triton). Batch 1 through Triton is the issue's goal row (p50 <= 30 ms).
- Then the judge against this machine's limit (``benchmarks.judge_roofline``): the fp32 matmul peak measured in
  the same run (the best of the bursts measured before each variant and after the last), each variant's GFLOP/s
  for the tokens it processes at batch 64 and batch 1 and their fraction of that peak (the torch judge, its torch
  dynamic-int8 copy, the ONNX fp32 and int8 versions; an int8 rate is still a fraction of the fp32 peak), each
  one's speed-up over torch fp32, and each one's accuracy on the trained judge's held-out test split (the change in
  points against torch fp32 and how often the labels agree).
- ``machine`` in the JSON and the last printed line: the CPU and its vector width (``benchmarks.machine``). The
  fractions of the peak and, above all, the int8 speed-up depend on them: quote them with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import time
from pathlib import Path

from benchmarks import machine
from schemas import paths

REPO = Path(__file__).resolve().parent.parent
SHARED_GOLD = paths.SHARED_GOLD
OUT = REPO / "bench-results"


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _items(n: int) -> list[dict]:
    from judge_engine.dataset import item_dict, load_gold
    from judge_engine.training.sample import write_sample

    source = SHARED_GOLD / "pandalm-test.jsonl"
    if not source.exists():
        source = OUT / "sample.jsonl"
        write_sample(source)
    items = [item_dict(i) for i in load_gold([source]).items if i.kind == "pairwise"]
    return [items[i % len(items)] for i in range(n)]


def _model(args) -> Path:
    if args.model:
        return Path(args.model)
    from judge_engine.training.sample import write_sample
    from judge_engine.training.trainer import train
    from operations.demo import TRAIN_FILES, default_training

    gold = [SHARED_GOLD / f for f in TRAIN_FILES if (SHARED_GOLD / f).exists()]
    if not gold:
        gold = [OUT / "sample.jsonl"]
        write_sample(gold[0])
    out = OUT / "judge-bench-model"
    train(default_training(gold, out, progress=False), log=lambda *_: None)
    return out


def _time_interleaved(runs: dict, batches) -> dict[str, list[float]]:
    """ms per batch of each run, taking turns batch by batch (run A on batch 1, run B on batch 1, ...), so that a
    load that changes during the measurement falls on every run alike; ``batches[0]`` warms each up."""
    for run in runs.values():
        run(batches[0])
    times: dict[str, list[float]] = {name: [] for name in runs}
    for batch in batches[1:]:
        for name, run in runs.items():
            started = time.perf_counter()
            run(batch)
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def _roofline(local, model: Path, args, variants: dict | None = None) -> dict:
    """The in-process judge and its variants (the torch dynamic-int8 copy, then ``variants``: name -> judge)
    against this machine's fp32 matmul peak, and each one's held-out accuracy change."""
    from benchmarks import judge_roofline as rl

    judges = {"fp32": local, "int8": rl.quantised(local), **(variants or {})}
    items = _items(args.roofline_batches * 64)
    batches = [items[i * 64 : (i + 1) * 64] for i in range(args.roofline_batches)]
    singles = [[it] for it in items[: args.items_per_size // 4]]
    out: dict = {"threads": args.threads, "variants": list(judges)}
    peaks = []
    for name, judge in judges.items():
        peaks.append(rl.matmul_peak_gflops(args.threads))
        out[name] = {"batch_64": rl.roofline(judge, batches, args.threads, peaks[-1]),
                     "batch_1": rl.roofline(judge, singles, args.threads, peaks[-1])}
        out[name]["batch_1"]["ms_per_item"] = round(1000 / out[name]["batch_1"]["items_per_s"], 1)  # a mean
        for size in ("batch_64", "batch_1"):
            out[f"{name}_speedup_{size}"] = round(out[name][size]["items_per_s"] / out["fp32"][size]["items_per_s"], 2)
    peaks.append(rl.matmul_peak_gflops(args.threads))
    peak = max(peaks)  # the roofline: the best burst of the part; every judge's fractions are of it
    out["fp32_matmul_peak_gflops"], out["peak_measurements_gflops"] = round(peak, 1), [round(p, 1) for p in peaks]
    for name in judges:
        for size in ("batch_64", "batch_1"):
            rl.against_peak(out[name][size], peak)
    try:
        labelled = rl.held_out(model)
    except (FileNotFoundError, KeyError) as e:  # a model without provenance, or its gold files are not here
        out["held_out"] = f"not measured: {e}"
        return out
    if labelled:
        base, base_labels = rl.accuracy(local, labelled)
        held: dict = {"items": len(labelled), "fp32_accuracy": round(base, 4)}
        for name, judge in list(judges.items())[1:]:
            acc, labels = rl.accuracy(judge, labelled)
            held[name] = {"accuracy": round(acc, 4), "change_points": round(100 * (acc - base), 2),
                          "same_label": round(sum(x == y for x, y in zip(base_labels, labels)) / len(labelled), 4)}
        out["held_out"] = held
    return out


def _print_roofline(r: dict) -> None:
    measured = ", ".join(str(p) for p in r.get("peak_measurements_gflops", ()))
    print(f"\nfp32 matmul peak with {r['threads']} threads (measured now): {r['fp32_matmul_peak_gflops']} GFLOP/s, the "
          f"best of the bursts measured before each judge and after the last ({measured})")
    print("| judge in process | batch | items/s | speed-up vs torch fp32 | GFLOP/s for its tokens | fraction of fp32 "
          "peak | sustained matmul GFLOP/s beside it | fraction of that | padding share | without padding: "
          "fraction of peak | time in the encoder | encoder alone: fraction of peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in r.get("variants", ("fp32", "int8")):
        for size in ("batch_64", "batch_1"):
            m = r[name][size]
            print(f"| {VARIANT_NAMES.get(name, name)} | {size.split('_')[1]} | {m['items_per_s']} | "
                  f"{r[f'{name}_speedup_{size}']} | {m['gflops']} | {m['fraction_of_peak']} | "
                  f"{m['sustained_peak_gflops']} | {m['fraction_of_sustained_peak']} | {m['padding_share']} | "
                  f"{m['useful_fraction_of_peak']} | {m['encoder_share_of_time']:.1%} | "
                  f"{m['encoder_fraction_of_peak']} |")
    h = r.get("held_out")
    if isinstance(h, dict):
        print(f"held-out accuracy ({h['items']} items of the judge's test split): torch fp32 {h['fp32_accuracy']:.4f}")
        for name in r.get("variants", ())[1:]:
            v = h[name]
            print(f"  {VARIANT_NAMES.get(name, name)}: {v['accuracy']:.4f} ({v['change_points']:+.2f} points; same "
                  f"label on {v['same_label']:.1%})")
    else:
        print(f"held-out accuracy: {h}")


VARIANT_NAMES = {"fp32": "torch fp32", "int8": "torch dynamic int8", "onnx_fp32": "ONNX Runtime fp32",
                 "onnx_int8": "ONNX Runtime int8"}


STAT_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")


def _server_stats(settings, model: str) -> dict[str, tuple[int, int]]:
    """Triton's own cumulative inference statistics of ``model`` (its HTTP ``/stats``): part -> (count, ns)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{settings.triton.http_url}/v2/models/{model}/stats", timeout=10) as answer:
        stats = json.load(answer)["model_stats"][0]["inference_stats"]
    return {part: (int(stats[part]["count"]), int(stats[part]["ns"])) for part in STAT_PARTS}


def _server_ms(before: dict, after: dict) -> dict[str, float]:
    """Mean ms per request of each part between two ``_server_stats`` snapshots (where a served request's time goes
    inside Triton: waiting in its queue, copying inputs, the python model's execute, copying outputs)."""
    out = {}
    for part in STAT_PARTS:
        count = after[part][0] - before[part][0]
        out[f"{part}_ms"] = round((after[part][1] - before[part][1]) / max(1, count) / 1e6, 2)
    return out


def _timed_row(size: int, in_process: list[float], served: list[float]) -> dict:
    row = {"batch_size": size, "batches": len(in_process)}
    for name, times in (("in_process", in_process), ("triton", served)):
        p50 = statistics.median(times)
        row[name] = {"p50_ms": round(p50, 1), "p95_ms": round(_pct(times, 0.95), 1),
                     "items_per_s": round(size * 1000 / p50, 1)}
    row["triton_overhead_ratio"] = round(row["triton"]["p50_ms"] / row["in_process"]["p50_ms"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="trained judge directory (default: train one here)")
    parser.add_argument("--batch-sizes", default="1,4,16,32,64")
    parser.add_argument("--items-per-size", type=int, default=96, help="items judged per batch size and mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--roofline-batches", type=int, default=2, help="batches of 64 for the FLOP rate")
    parser.add_argument("--candidate", help="a second trained judge to time in process beside --model")
    parser.add_argument("--runtimes", default="onnx-fp32,onnx-int8",
                        help="encoder-runtime variants of --model to time beside it ('' for none)")
    parser.add_argument("--runtime-batch-sizes", default="1,64", help="batch sizes at which the variants are timed")
    args = parser.parse_args()

    import torch

    from judge_engine.clients.triton_client import TritonJudge
    from judge_engine.model.student import Judge
    from judge_engine.training.export import export, prepare
    from schemas.settings import Settings
    from stack import services as stack

    torch.set_num_threads(args.threads)
    OUT.mkdir(exist_ok=True)
    model = _model(args)
    work = OUT / ".judge-bench"
    shutil.rmtree(work, ignore_errors=True)
    repo = work / "models"
    export(model, repo, "judge")
    variants: dict[str, tuple[str, Path]] = {}  # variant -> (Triton model, exported version directory)
    for variant in filter(None, args.runtimes.split(",")):
        runtime, _, precision = variant.partition("-")
        prepared = prepare(model, work / variant, runtime, precision or "fp32")
        name = f"judge_{runtime}_{precision or 'fp32'}"
        variants[variant.replace("-", "_")] = (name, export(prepared, repo, name))
    for config in repo.glob("*/config.pbtxt"):
        config.write_text(config.read_text().replace('string_value: "2"', f'string_value: "{args.threads}"'))
    settings = Settings(stack={"state_dir": work / "state", "model_repository": repo})
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    variant_sizes = {int(s) for s in args.runtime_batch_sizes.split(",") if s}
    rows, runtime_rows = [], []
    local = Judge(model)
    candidate = Judge(args.candidate) if args.candidate else None
    variant_judges = {v: Judge(directory, threads=args.threads) for v, (_, directory) in variants.items()}
    try:
        stack.up(settings, ("triton",), log=lambda *_: None)
        settings = stack.effective_settings(settings)

        async def serve(models: dict[str, str], batches) -> dict[str, list[float]]:
            """Through Triton: ms per batch of each of ``models`` (key -> Triton model name), taking turns batch by
            batch like ``_time_interleaved``; ``batches[0]`` warms each up."""
            async with contextlib.AsyncExitStack() as clients:
                judges = {key: await clients.enter_async_context(TritonJudge(
                    settings.triton.model_copy(update={"model_name": name}), max_batch_size=max(sizes)))
                    for key, name in models.items()}
                return await _served(judges, batches)

        async def _served(judges, batches):
            for j in judges.values():
                await j.judge(batches[0])  # warm-up
            out: dict[str, list[float]] = {key: [] for key in judges}
            for batch in batches[1:]:
                for key, j in judges.items():
                    started = time.perf_counter()
                    await j.judge(batch)
                    out[key].append((time.perf_counter() - started) * 1000)
            return out

        for size in sizes:
            n_batches = max(3, args.items_per_size // size)
            items = _items((n_batches + 1) * size)
            batches = [items[i * size : (i + 1) * size] for i in range(n_batches + 1)]
            timed = variants if size in variant_sizes else {}
            runs = {"torch": local.judge, **{v: variant_judges[v].judge for v in timed}}
            in_process = _time_interleaved({**runs, **({"candidate": candidate.judge} if candidate else {})}, batches)
            models = {"torch": "judge", **{v: name for v, (name, _) in timed.items()}}
            before = {key: _server_stats(settings, name) for key, name in models.items()}
            served = asyncio.run(serve(models, batches))
            inside = {key: _server_ms(before[key], _server_stats(settings, name)) for key, name in models.items()}
            row = _timed_row(size, in_process["torch"], served["torch"])
            row["triton_server_ms"] = inside["torch"]
            if candidate is not None:
                p50 = statistics.median(in_process["candidate"])
                row["candidate_in_process"] = {"p50_ms": round(p50, 1), "items_per_s": round(size * 1000 / p50, 1)}
                row["candidate_vs_model_ratio"] = round(p50 / row["in_process"]["p50_ms"], 3)
                print(f"batch {size:3d}: candidate in process p50 {p50:8.1f} ms "
                      f"({row['candidate_in_process']['items_per_s']:6.1f} items/s), "
                      f"{row['candidate_vs_model_ratio']:.3f}x the model's time", flush=True)
            rows.append(row)
            print(f"batch {size:3d}: in process p50 {row['in_process']['p50_ms']:8.1f} ms "
                  f"({row['in_process']['items_per_s']:6.1f} items/s) | Triton p50 {row['triton']['p50_ms']:8.1f} "
                  f"ms p95 {row['triton']['p95_ms']:8.1f} ({row['triton']['items_per_s']:6.1f} items/s) | "
                  f"ratio {row['triton_overhead_ratio']:.3f}", flush=True)
            for variant in timed:
                vrow = {"variant": variant, **_timed_row(size, in_process[variant], served[variant]),
                        "triton_server_ms": inside[variant]}
                vrow["speedup_vs_torch"] = {
                    where: round(row[where]["p50_ms"] / vrow[where]["p50_ms"], 2) for where in ("in_process", "triton")}
                runtime_rows.append(vrow)
                print(f"batch {size:3d} {VARIANT_NAMES[variant]}: in process p50 {vrow['in_process']['p50_ms']:8.1f} "
                      f"ms | Triton p50 {vrow['triton']['p50_ms']:8.1f} ms p95 {vrow['triton']['p95_ms']:8.1f} | "
                      f"{vrow['speedup_vs_torch']['triton']:.2f}x torch through Triton | inside Triton, mean ms: "
                      f"{vrow['triton_server_ms']}", flush=True)
    finally:
        stack.down(settings, log=lambda *_: None)
    limits = _roofline(local, model, args, variant_judges)
    result = {
        "benchmark": "judge",
        "machine": machine.describe(torch_threads=args.threads),
        "model": str(model),
        "candidate": args.candidate,
        "items": "pairwise PandaLM items (question + two answers; each scored in both orders)",
        "rows": rows,
        "runtime_rows": runtime_rows,
        "roofline": limits,
    }
    (OUT / "judge.json").write_text(json.dumps(result, indent=2))
    print("\n| batch | in-process p50 ms | in-process items/s | Triton p50 ms | Triton p95 ms | Triton items/s "
          "| Triton/in-process |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['in_process']['p50_ms']} | {r['in_process']['items_per_s']} | "
              f"{r['triton']['p50_ms']} | {r['triton']['p95_ms']} | {r['triton']['items_per_s']} | "
              f"{r['triton_overhead_ratio']} |")
    if runtime_rows:
        print("\n| encoder runtime | batch | in-process p50 ms | Triton p50 ms | Triton p95 ms | Triton items/s | speed-up "
              "vs torch in process | speed-up vs torch through Triton |")
        print("|---|---|---|---|---|---|---|---|")
        for r in runtime_rows:
            print(f"| {VARIANT_NAMES[r['variant']]} | {r['batch_size']} | {r['in_process']['p50_ms']} | "
                  f"{r['triton']['p50_ms']} | {r['triton']['p95_ms']} | {r['triton']['items_per_s']} | "
                  f"{r['speedup_vs_torch']['in_process']} | {r['speedup_vs_torch']['triton']} |")
    _print_roofline(limits)
    print(f"\n{machine.line(result['machine'])}; wrote {OUT / 'judge.json'}")


if __name__ == "__main__":
    main()
