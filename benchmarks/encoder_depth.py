"""What a shallower encoder costs in accuracy: the judge trained at several encoder depths on the same splits.

Contract:
- ``python -m benchmarks.encoder_depth [--depths 6,4] [--seeds 13,14,15,16,17]`` (part of ``make bench``) trains
  the embedded default's judge (``operations.demo``'s recipe: the shared pairwise gold sets, gpt-4 labels, a frozen
  encoder) once per (seed, depth), the encoder cut to its first ``depth`` layers (``TrainConfig.encoder_layers``).
  A seed fixes the split by question and the heads' initialisation, so the depths of one seed are measured on the
  same held-out questions and differ only in the encoder.
- Reported per depth: the mean over seeds of the test split's accuracy against the teacher's labels (what the judge
  is trained to reproduce) and against the human labels, kappa against humans and ECE; and per depth below the
  full six, the paired change in points against six layers (mean over seeds, with its standard error: one split of
  about 340 items has a standard error near 2.6 points, so a single split cannot tell a 1-point change).
  The same per gold file (``per_file``: each file's held-out items vs human and vs gpt-4, measured in process by
  ``benchmarks.student_quality.measure``): the demo reports one file on one split, where a depth can swing by
  several points either way. The speed of a depth is ``benchmarks.judge``'s (the CPU default serves four layers).
- Models go to ``bench-results/depth-models/`` (replaced each run); results: a printed table and
  ``bench-results/encoder_depth.json``; without ``../shared``'s gold sets it says so and measures nothing.
  Embeddings are cached per depth (``embedding_cache.sentence_namespace``), so only the first run at a depth encodes
  the texts.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.judge import OUT

METRICS = ("accuracy_vs_training_label", "accuracy_vs_human", "kappa_vs_human", "ece")


def gold_files() -> list[Path]:
    """The embedded default's training files in ``../shared``."""
    from operations.demo import TRAIN_FILES
    from schemas import paths

    return [paths.SHARED_GOLD / f for f in TRAIN_FILES]


def _change(c: dict | None) -> str:
    return f"{c['mean']:+.2f} ({c['standard_error']:.2f})" if c else "-"


def train_at(depth: int, seed: int, out: Path) -> dict:
    """The pairwise test metrics of the embedded default's judge trained with ``depth`` encoder layers."""
    from benchmarks.student_quality import measure
    from judge_engine.training.trainer import train
    from operations.demo import default_training

    files = gold_files()
    result = train(default_training(files, out, seed=seed, encoder_layers=depth, progress=False), log=lambda *_: None)
    per_file = {}
    for f in files:
        m = measure(result.model_dir, f)
        per_file[f.name] = {"n": m["n"], "accuracy_vs_human": m["accuracy_vs_human"],
                            "accuracy_vs_teacher": m["accuracy_vs_teacher"]}
    return ({m: float(result.test["pairwise"][m]) for m in METRICS} | {"n": int(result.test["pairwise"]["n"])}
            | {"per_file": per_file})


def _paired(new: dict[int, float], base: dict[int, float]) -> dict:
    """The change new - base in points over the seeds both have: mean, standard error, and each seed's."""
    diffs = [100 * (new[s] - base[s]) for s in new if s in base]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"mean": round(statistics.fmean(diffs), 2), "standard_error": round(se, 2),
            "per_seed": [round(d, 2) for d in diffs]}


def summarise(runs: dict[int, dict[int, dict]], full: int) -> dict:
    """Per depth: means over seeds, and the paired change against ``full`` layers (points, with standard error)."""
    out: dict = {}
    for depth, by_seed in runs.items():
        row: dict = {m: round(statistics.fmean(r[m] for r in by_seed.values()), 4) for m in METRICS}
        files = sorted({f for r in by_seed.values() for f in r.get("per_file", {})})
        row["per_file"] = {f: {m: round(statistics.fmean(r["per_file"][f][m] for r in by_seed.values()), 4)
                               for m in ("accuracy_vs_human", "accuracy_vs_teacher")} for f in files}
        if depth != full and full in runs:
            for m in ("accuracy_vs_training_label", "accuracy_vs_human"):
                row[f"{m}_change_points"] = _paired({s: r[m] for s, r in by_seed.items()},
                                                    {s: r[m] for s, r in runs[full].items()})
            for f in files:
                for m in ("accuracy_vs_human", "accuracy_vs_teacher"):
                    row["per_file"][f][f"{m}_change_points"] = _paired(
                        {s: r["per_file"][f][m] for s, r in by_seed.items()},
                        {s: r["per_file"][f][m] for s, r in runs[full].items() if f in r.get("per_file", {})})
        out[depth] = row
    return out


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depths", default="6,4", help="encoder depths, comma-separated (6 is the full encoder)")
    p.add_argument("--seeds", default="13,14,15,16,17", help="split and training seeds, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    missing = [str(f) for f in gold_files() if not f.is_file()]
    if missing:  # the study is about the shared sets; the synthetic sample would measure nothing of them
        print(f"encoder depth: not measured, the shared gold sets are missing ({', '.join(missing)})")
        return
    torch.set_num_threads(args.threads)
    depths = [int(d) for d in args.depths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    models = OUT / "depth-models"
    shutil.rmtree(models, ignore_errors=True)
    started = time.perf_counter()
    runs: dict[int, dict[int, dict]] = {d: {} for d in depths}
    for seed in seeds:
        for depth in depths:
            runs[depth][seed] = train_at(depth, seed, models / f"depth{depth}-seed{seed}")
            r = runs[depth][seed]
            print(f"seed {seed} depth {depth}: accuracy vs teacher {r['accuracy_vs_training_label']:.4f}, vs human "
                  f"{r['accuracy_vs_human']:.4f} (n={r['n']})", flush=True)
    summary = summarise(runs, full=max(depths))
    result = {"benchmark": "encoder_depth", "depths": depths, "seeds": seeds,
              "seconds": round(time.perf_counter() - started, 1), "runs": runs, "summary": summary,
              "machine": machine.describe()}
    OUT.mkdir(exist_ok=True)
    (OUT / "encoder_depth.json").write_text(json.dumps(result, indent=2))
    print(f"\n| encoder layers | accuracy vs gpt-4 (mean of {len(seeds)} splits) | change vs {max(depths)} layers, "
          "points (standard error) | accuracy vs human | change vs human, points | kappa vs human | ECE |")
    print("|---|---|---|---|---|---|---|")
    for depth in depths:
        s = summary[depth]
        t = s.get("accuracy_vs_training_label_change_points")
        h = s.get("accuracy_vs_human_change_points")
        print(f"| {depth} | {s['accuracy_vs_training_label']:.4f} | {_change(t)} | {s['accuracy_vs_human']:.4f} | "
              f"{_change(h)} | {s['kappa_vs_human']:.3f} | {s['ece']:.3f} |")
    print(f"\n| encoder layers | gold file (its held-out items) | accuracy vs human | change vs {max(depths)} layers, "
          "points (standard error) | accuracy vs gpt-4 | change, points (standard error) |")
    print("|---|---|---|---|---|---|")
    for depth in depths:
        for name, f in summary[depth]["per_file"].items():
            print(f"| {depth} | {name} | {f['accuracy_vs_human']:.4f} | "
                  f"{_change(f.get('accuracy_vs_human_change_points'))} | {f['accuracy_vs_teacher']:.4f} | "
                  f"{_change(f.get('accuracy_vs_teacher_change_points'))} |")
    print(f"wrote {OUT / 'encoder_depth.json'} in {result['seconds']} s")


if __name__ == "__main__":
    main()
