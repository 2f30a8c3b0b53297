"""Student quality experiments: train one configuration, measure it on held-out gold items in process.

Contract:
- ``python -m benchmarks.student_quality --name NAME [training options]`` trains a student (``judgeline train``'s
  trainer) on the shared pairwise gold sets plus, unless ``--no-alpaca``, a seeded sample of the AlpacaEval
  teacher file, then judges the pairwise gold items of the test split (the same questions in every run: the
  split is by question, seeded) that the model was not trained or calibrated on (fingerprints, as ``judgeline
  eval`` checks; length balancing leaves other gold items untrained too, they are not counted, so every
  configuration is measured on the same items) with ``student.Judge`` in process (the code
  Triton serves). Per gold file: accuracy and kappa vs human, the file's gpt-4 verdict vs human, swap
  consistency, ECE, the bias meters for student, teacher and humans on the same items (a frozen encoder's vectors
  come from the embedding cache, bit-identical to fresh ones; throughput is ``benchmarks.judge --candidate``'s).
- One JSON line per run is appended to ``bench-results/student_quality.jsonl`` (config, counts, seconds,
  figures) as soon as it is measured, so a long series keeps what it measured; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from schemas import paths

OUT = Path(__file__).resolve().parent.parent / "bench-results" / "student_quality.jsonl"
GOLD = ("pandalm-test.jsonl", "llmbar-processed.jsonl")
ALPACA = "alpacaeval-gpt4.jsonl.gz"


def measure(model_dir: Path, gold: Path, teacher: str = "gpt-4") -> dict:
    from judge_engine.dataset import _bucket, fingerprint, item_dict, load_gold
    from judge_engine.evaluation import bias, metrics
    from judge_engine.model.student import Judge
    from judge_engine.model.verdict_math import LABELS

    judge = Judge(model_dir)
    if not judge.meta.get("finetuned_layers"):  # frozen encoder: cached vectors are bit-identical to fresh ones
        from judge_engine.training.embedding_cache import EmbeddingCache, sentence_namespace

        cache = EmbeddingCache(namespace=sentence_namespace(judge.encoder.max_length, judge.encoder.depth))
        judge.vectors = lambda texts: cache.vectors(texts, judge.encoder.encode)[0]
    seen = set(judge.meta.get("trained_on", []))
    split = judge.meta["split"]  # the test split's questions: the same in every run with the same seed and fractions
    items = [it for it in load_gold([gold]).items if it.kind == "pairwise" and fingerprint(it) not in seen
             and _bucket(it.question, split["seed"]) < split["test"]]
    rows = [item_dict(it) for it in items]
    verdicts = []
    for i in range(0, len(rows), 16):
        verdicts += judge.judge(rows[i : i + 16], first_order=True)
    pred = [v["label"] for v in verdicts]
    human = [it.human_label for it in items]
    teach = [it.teacher.get(teacher) for it in items]
    correct = [p == h for p, h in zip(pred, human)]
    return {
        "n": len(items),
        "accuracy_vs_human": metrics.accuracy(pred, human),
        "kappa_vs_human": metrics.cohen_kappa(pred, human, LABELS["pairwise"]),
        "teacher_accuracy_vs_human": metrics.accuracy(teach, human),
        "accuracy_vs_teacher": metrics.accuracy(pred, teach),
        "swap_consistency": sum(v["swap_consistent"] for v in verdicts) / len(verdicts),
        "ece": metrics.expected_calibration_error([v["confidence"] for v in verdicts], correct),
        "bias": bias.meters(items, {"student": {"labels": pred, "first_order": [v["first_order_label"]
                                                                                 for v in verdicts]},
                                    "teacher": {"labels": teach}}, human),
    }


def main() -> None:
    import torch

    from judge_engine.training.trainer import TrainConfig, train

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--arch", default="bi", choices=("bi", "cross"))
    p.add_argument("--alpaca-sample", type=int, default=8000, help="items sampled per file (the gold sets are "
                   "smaller, so whole)")
    p.add_argument("--no-alpaca", action="store_true")
    p.add_argument("--length-balance", action="store_true")
    p.add_argument("--finetune-layers", type=int, default=0)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--measure-only", action="store_true", help="measure the model already in --out (or the name's)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gold = [paths.SHARED_GOLD / g for g in GOLD]
    files = gold + ([] if args.no_alpaca else [paths.SHARED_TRAIN / ALPACA])
    out = args.out or OUT.parent / "models" / args.name
    cfg = TrainConfig(gold=tuple(files), out=out, teacher=("gpt-4", "gpt-4-turbo"), arch=args.arch,
                      sample_per_file=None if args.no_alpaca else args.alpaca_sample,
                      length_balance=args.length_balance, finetune_layers=args.finetune_layers, skip_invalid=True,
                      finetune_epochs=args.finetune_epochs, max_length=args.max_length)
    started = time.perf_counter()
    if args.measure_only:
        report = json.loads((out / "training_report.json").read_text())
        counts, seconds = report["counts"], report["seconds"]
    else:
        result = train(cfg, log=print)
        counts, seconds = result.counts, result.seconds
    row = {"name": args.name, "args": vars(args) | {"out": str(out)}, "counts": counts,
           "seconds": seconds, "train_s": round(time.perf_counter() - started, 1),
           "held_out": {g.name: measure(out, g) for g in gold},
           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row, default=float) + "\n")
    for name, m in row["held_out"].items():
        b = m["bias"]
        print(f"{args.name} {name}: n={m['n']} acc {100 * m['accuracy_vs_human']:.1f}% kappa "
              f"{m['kappa_vs_human']:.3f} (gpt-4 {100 * m['teacher_accuracy_vs_human']:.1f}%) swap "
              f"{m['swap_consistency']:.3f} ECE {m['ece']:.3f} longer-wins student/teacher/human "
              f"{b['student']['longer_wins']['rate']:.3f}/{b['teacher']['longer_wins']['rate']:.3f}/"
              f"{b['human']['longer_wins']['rate']:.3f} first-wins {b['student']['first_wins']['rate']:.3f} "
              f"shorter-won acc {b['student']['accuracy_where_shorter_won']['rate']}")


if __name__ == "__main__":
    main()
