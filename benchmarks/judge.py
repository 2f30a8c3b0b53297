"""Judge benchmark: per-micro-batch latency and throughput of the student judge, in process and through Triton.

Contract:
- Starts its own Triton (``stack.services`` with a private state directory under ``bench-results/``), exports the
  judge into a private model repository, and stops Triton by PID at the end; touches no running stack.
- The judge is the one ``--model`` names, else one trained here on the shared pairwise sets (seconds once their
  embeddings are cached), else on the project's synthetic sample when ``../shared`` is absent.
- Items are real pairwise gold items (realistic lengths: PandaLM's questions and answers), cycled. For each batch
  size it times whole micro-batches one after another: the model in process (``student.Judge``, torch threads as
  in the Triton config), then the same batches through Triton's gRPC (``TritonJudge``). Reported: items/s,
  p50/p95 ms per batch, and the server's overhead as the ratio of the p50s. Both run on the same cores, never at
  the same time. Results: a printed table and ``bench-results/judge.json``.
- ``--candidate DIR`` (issue 16: a cross-encoder or any other trained judge) adds, in the same run and on the same
  batches, the candidate judged in process, its items/s and the ratio of its p50 to the model's
  (``candidate_vs_model_ratio``: above 1 means slower per item).
- Then the judge against this machine's limit (``benchmarks.judge_roofline``): the fp32 matmul peak measured in
  the same run, the in-process judge's GFLOP/s for the tokens it processes at batch 64 and batch 1 and their
  fraction of that peak, the same for the dynamic-int8 variant (speed-up), and both variants' accuracy on the
  trained judge's held-out test split (the change in points and how often the labels agree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

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
    from judge_engine.training.trainer import TrainConfig, train

    gold = [SHARED_GOLD / f for f in ("pandalm-test.jsonl", "llmbar-processed.jsonl") if (SHARED_GOLD / f).exists()]
    if not gold:
        gold = [OUT / "sample.jsonl"]
        write_sample(gold[0])
    out = OUT / "judge-bench-model"
    train(TrainConfig(gold=tuple(gold), out=out, progress=False), log=lambda *_: None)
    return out


def _time_batches(run, batches) -> list[float]:
    run(batches[0])  # warm-up
    times = []
    for batch in batches:
        started = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _roofline(local, model: Path, args) -> dict:
    """The in-process judge (fp32 and int8) against this machine's fp32 matmul peak, and the int8 accuracy change."""
    from benchmarks import judge_roofline as rl

    peak = rl.matmul_peak_gflops(args.threads)
    q = rl.quantised(local)
    items = _items(args.roofline_batches * 64)
    batches = [items[i * 64 : (i + 1) * 64] for i in range(args.roofline_batches)]
    singles = [[it] for it in items[: args.items_per_size // 4]]
    out: dict = {"threads": args.threads, "fp32_matmul_peak_gflops": round(peak, 1)}
    for name, judge in (("fp32", local), ("int8", q)):
        out[name] = {"batch_64": rl.roofline(judge, batches, args.threads, peak),
                     "batch_1": rl.roofline(judge, singles, args.threads, peak)}
        out[name]["batch_1"]["p50_ms"] = round(1000 / out[name]["batch_1"]["items_per_s"], 1)
    out["int8_speedup_batch_64"] = round(out["int8"]["batch_64"]["items_per_s"]
                                         / out["fp32"]["batch_64"]["items_per_s"], 2)
    out["int8_speedup_batch_1"] = round(out["int8"]["batch_1"]["items_per_s"]
                                        / out["fp32"]["batch_1"]["items_per_s"], 2)
    try:
        labelled = rl.held_out(model)
    except (FileNotFoundError, KeyError) as e:  # a model without provenance, or its gold files are not here
        out["held_out"] = f"not measured: {e}"
        return out
    if labelled:
        a, fp32_labels = rl.accuracy(local, labelled)
        b, int8_labels = rl.accuracy(q, labelled)
        out["held_out"] = {"items": len(labelled), "fp32_accuracy": round(a, 4), "int8_accuracy": round(b, 4),
                           "change_points": round(100 * (b - a), 2),
                           "same_label": round(sum(x == y for x, y in zip(fp32_labels, int8_labels)) / len(labelled), 4)}
    return out


def _print_roofline(r: dict) -> None:
    print(f"\nfp32 matmul peak with {r['threads']} threads (measured now): {r['fp32_matmul_peak_gflops']} GFLOP/s")
    print("| judge in process | batch | items/s | GFLOP/s for its tokens | fraction of fp32 peak | padding share |")
    print("|---|---|---|---|---|---|")
    for name in ("fp32", "int8"):
        for size in ("batch_64", "batch_1"):
            m = r[name][size]
            print(f"| {name} | {size.split('_')[1]} | {m['items_per_s']} | {m['gflops']} | {m['fraction_of_peak']} | "
                  f"{m['padding_share']} |")
    print(f"int8 speed-up: {r['int8_speedup_batch_64']}x at batch 64, {r['int8_speedup_batch_1']}x at batch 1 "
          f"(batch-1 p50 {r['fp32']['batch_1']['p50_ms']} -> {r['int8']['batch_1']['p50_ms']} ms)")
    h = r.get("held_out")
    if isinstance(h, dict):
        print(f"held-out accuracy ({h['items']} items of the judge's test split): fp32 {h['fp32_accuracy']:.4f}, "
              f"int8 {h['int8_accuracy']:.4f} ({h['change_points']:+.2f} points; same label on {h['same_label']:.1%})")
    else:
        print(f"held-out accuracy: {h}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="trained judge directory (default: train one here)")
    parser.add_argument("--batch-sizes", default="1,4,16,32,64")
    parser.add_argument("--items-per-size", type=int, default=96, help="items judged per batch size and mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--roofline-batches", type=int, default=2, help="batches of 64 for the FLOP rate")
    parser.add_argument("--candidate", help="a second trained judge to time in process beside --model")
    args = parser.parse_args()

    import torch

    from judge_engine.clients.triton_client import TritonJudge
    from judge_engine.model.student import Judge
    from judge_engine.training.export import export
    from schemas.settings import Settings
    from stack import services as stack

    torch.set_num_threads(args.threads)
    OUT.mkdir(exist_ok=True)
    model = _model(args)
    work = OUT / ".judge-bench"
    shutil.rmtree(work, ignore_errors=True)
    repo = work / "models"
    export(model, repo, "judge")
    config = repo / "judge" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "2"', f'string_value: "{args.threads}"'))
    settings = Settings(stack={"state_dir": work / "state", "model_repository": repo})
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    rows = []
    local = Judge(model)
    candidate = Judge(args.candidate) if args.candidate else None
    try:
        stack.up(settings, ("triton",), log=lambda *_: None)
        settings = stack.effective_settings(settings)

        async def serve(batches):
            async with TritonJudge(settings.triton, max_batch_size=max(sizes)) as client:
                out = []
                for batch in batches:
                    started = time.perf_counter()
                    await client.judge(batch)
                    out.append((time.perf_counter() - started) * 1000)
                return out

        for size in sizes:
            n_batches = max(3, args.items_per_size // size)
            items = _items((n_batches + 1) * size)
            batches = [items[i * size : (i + 1) * size] for i in range(n_batches + 1)]
            in_process = _time_batches(local.judge, batches)[: n_batches]
            asyncio.run(serve(batches[:1]))  # warm-up
            served = asyncio.run(serve(batches[1:]))
            row = {"batch_size": size, "batches": n_batches}
            for name, times in (("in_process", in_process), ("triton", served)):
                p50 = statistics.median(times)
                row[name] = {"p50_ms": round(p50, 1), "p95_ms": round(_pct(times, 0.95), 1),
                             "items_per_s": round(size * 1000 / p50, 1)}
            row["triton_overhead_ratio"] = round(row["triton"]["p50_ms"] / row["in_process"]["p50_ms"], 3)
            if candidate is not None:
                p50 = statistics.median(_time_batches(candidate.judge, batches)[:n_batches])
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
    finally:
        stack.down(settings, log=lambda *_: None)
    limits = _roofline(local, model, args)
    result = {
        "benchmark": "judge",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": args.threads},
        "model": str(model),
        "candidate": args.candidate,
        "items": "pairwise PandaLM items (question + two answers; each scored in both orders)",
        "rows": rows,
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
    _print_roofline(limits)
    print(f"\nwrote {OUT / 'judge.json'}")


if __name__ == "__main__":
    main()
