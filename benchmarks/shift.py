"""Shift benchmark (issue 15): routing from live evidence when traffic unlike the training set arrives as a new app.

Contract:
- The judge is the one ``--model`` names, else one trained here (frozen encoder, ``gpt-4`` labels) on
  ``--train-set``; it is run in process (``student`` heads on the judge's own embeddings, cached), not through
  Triton: the routing measured here does not depend on the serving path.
- The stream: the held-out items of the training set (never trained or calibrated on: by content fingerprint),
  shuffled with ``--seed``; after ``--new-after`` of them, the items of ``--new-set`` start arriving as a new app
  (its file stem), interleaved at random with the rest. Segments are (default, app, kind, criterion); the training
  set's app is its ``source`` as ``Trace.from_gold`` streams it, so the version's validation evidence covers it.
- Simulated with ``judge_engine.evaluation.policy_sim`` (the live controller's code, starting from the version's
  validation evidence only), once with novelty routing (the version's ``novelty.npz``) and once without; beside
  them, today's global threshold (``routing.threshold`` and the base calibration sample) and the frontier alone,
  on the same items. Reported per app: accuracy vs human, frontier fraction, accepted verdicts' agreement with the
  frontier and with humans, and the issue's goals checked; the novelty score's AUROC (held-out training-set items
  vs the new set); the same policy at other accepted error rates (``--error-rates``: the cost/safety trade-off).
  Results: a printed table, ``bench-results/shift.json`` and one ``bench-results/shift.<run>.png`` per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import machine
from schemas import paths

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench-results"


def _train(train_set: Path, out: Path) -> Path:
    from judge_engine.training.trainer import TrainConfig, train

    train(TrainConfig(gold=(train_set,), out=out, progress=False, finetune_layers=0), log=lambda *_: None)
    return out


def _judge(model: Path, items: list[dict]):
    """Verdicts and the judge's own embeddings for ``items`` (embeddings cached as training caches them)."""
    from judge_engine.model.student import Judge, answer_key, texts_of
    from judge_engine.training.embedding_cache import EmbeddingCache, sentence_namespace

    judge = Judge(model)
    texts = [t for it in items for t in texts_of(it, judge.heads.cross)]
    if judge.meta.get("finetuned_layers"):
        vectors = judge.vectors(texts)
    else:
        cache = EmbeddingCache(namespace=sentence_namespace(judge.encoder.max_length, judge.encoder.depth))
        vectors, _ = cache.vectors(texts, judge.encoder.encode)
        cache.close()
    keyed = (lambda item, answer: answer_key(item, answer, True)) if judge.heads.cross else None
    return judge.heads.judge_vectors(items, vectors), vectors, keyed


def _global_threshold(stream, threshold: float, rate: float) -> dict:
    """Today's routing on the same stream: one threshold and a fixed calibration sample."""
    from judge_engine.online.routing import in_calibration_sample

    by_app: dict[str, list] = {}
    for s in stream:
        routed = s.confidence < threshold or in_calibration_sample(s.trace_id, rate)
        final = s.teacher if routed and s.teacher is not None else s.label
        by_app.setdefault(s.segment.app, []).append((routed, final == s.human if s.human is not None else None))
    out = {}
    for app, rows in by_app.items():
        scored = [ok for _, ok in rows if ok is not None]
        out[app] = {"n": len(rows), "frontier_fraction": sum(r for r, _ in rows) / len(rows),
                    "accuracy_vs_human": sum(scored) / len(scored) if scored else None}
    return out


def _per_app(report: dict) -> dict:
    """Per-app figures summed over the app's segments."""
    apps: dict[str, dict] = {}
    for seg, s in report["segments"].items():
        app = seg.split("/")[1]
        a = apps.setdefault(app, {"n": 0, "routed": 0.0, "human_ok": 0.0, "human_n": 0, "segments": []})
        a["n"] += s["n"]
        a["routed"] += s["frontier_fraction"] * s["n"]
        if s["accuracy_vs_human"] is not None:
            a["human_ok"] += s["accuracy_vs_human"] * s["n"]
            a["human_n"] += s["n"]
        a["segments"].append(seg)
    return {app: {"n": a["n"], "frontier_fraction": a["routed"] / a["n"],
                  "accuracy_vs_human": a["human_ok"] / a["human_n"] if a["human_n"] else None,
                  "segments": a["segments"]} for app, a in apps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="trained judge directory (default: train one on --train-set here)")
    parser.add_argument("--train-set", default=str(paths.SHARED_GOLD / "pandalm-test.jsonl"))
    parser.add_argument("--new-set", default=str(paths.SHARED_GOLD / "llmbar-processed.jsonl"))
    parser.add_argument("--frontier", default="gpt-4", help="the teacher in the files acting as the frontier judge")
    parser.add_argument("--new-after", type=float, default=0.3, help="fraction of held-out items before the new app")
    parser.add_argument("--update-every", type=int, default=50, help="re-fit the policy every N items")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--error-rates", default="0.10,0.15,0.20",
                        help="also simulate these accepted error rates (the trade-off beside the setting's)")
    args = parser.parse_args()

    import torch

    from judge_engine.dataset import fingerprint, item_dict, load_gold
    from judge_engine.evaluation import metrics, policy_sim
    from judge_engine.model.novelty import FILENAME, NoveltyIndex, item_matrix
    from judge_engine.online.policy import Segment, validation_evidence
    from schemas.settings import Settings

    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    settings = Settings()
    train_set, new_set = Path(args.train_set), Path(args.new_set)
    model = Path(args.model) if args.model else _train(train_set, OUT / "shift-judge")
    meta = json.loads((model / "student.json").read_text())
    seen = set(meta.get("trained_on", []))
    held = [it for it in load_gold([train_set]).items if fingerprint(it) not in seen]
    new = [it for it in load_gold([new_set]).items if fingerprint(it) not in seen]
    rng = random.Random(args.seed)
    rng.shuffle(held)
    rng.shuffle(new)
    head = int(len(held) * args.new_after)
    tail = [("held", it) for it in held[head:]] + [("new", it) for it in new]
    rng.shuffle(tail)
    order = [("held", it) for it in held[:head]] + tail
    items = [item_dict(it) for _, it in order]
    verdicts, vectors, keyed = _judge(model, items)
    new_app = new_set.name.split(".")[0]
    stream = []
    for (origin, it), v in zip(order, verdicts):
        app = (it.source[:128] or "gold") if origin == "held" else new_app
        stream.append(policy_sim.StreamItem(it.id, Segment("default", app, it.kind, it.criterion), v["label"],
                                            float(v["confidence"]), it.teacher.get(args.frontier), it.human_label))
    novelty = None
    if (model / FILENAME).is_file():
        index = NoveltyIndex.load(model)
        scores = index.score(item_matrix(items, vectors, keyed))
        held_scores = [float(s) for (o, _), s in zip(order, scores) if o == "held"]
        new_scores = [float(s) for (o, _), s in zip(order, scores) if o == "new"]
        novelty = {"threshold": index.threshold, "percentile": index.percentile, "k": index.k,
                   "auroc_new_vs_held_out": round(metrics.auroc(held_scores, new_scores), 4),
                   "novel_fraction_held_out": round(sum(s > index.threshold for s in held_scores) / len(held_scores), 4),
                   "novel_fraction_new": round(sum(s > index.threshold for s in new_scores) / len(new_scores), 4)}
        novel_stream = policy_sim.with_novelty(stream, [bool(x) for x in index.is_novel(scores)])
    prior = validation_evidence(meta)
    cfg = policy_sim.SimConfig.from_settings(settings.routing, update_every=args.update_every)
    runs = {"policy": policy_sim.simulate(stream, prior, cfg)}
    if novelty is not None:
        runs["policy+novelty"] = policy_sim.simulate(novel_stream, prior, cfg)
    for eps in (float(e) for e in args.error_rates.split(",") if e.strip()):
        runs[f"policy, error <= {eps:.2f}"] = policy_sim.simulate(
            stream, prior, dataclasses.replace(cfg, accepted_error_rate=eps))
    judge_alone = {}
    for app in {s.segment.app for s in stream}:
        scored = [s for s in stream if s.segment.app == app and s.human is not None]
        judge_alone[app] = sum(s.label == s.human for s in scored) / len(scored) if scored else None
    baseline = _global_threshold(stream, settings.routing.threshold, settings.routing.calibration_sample_rate)

    result = {"benchmark": "shift", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine.describe(),
              "command": "python -m benchmarks.shift " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                  vars(args).items() if v is not None),
              "model": str(model), "judge_trained_on": [d["path"] for d in meta.get("data", [])],
              "frontier": args.frontier, "stream": {"held_out": len(held), "new": len(new), "new_after": head,
                                                    "new_app": new_app},
              "prior_evidence": len(prior), "judge_alone_accuracy_vs_human": judge_alone, "config": runs["policy"]["config"], "novelty": novelty,
              "global_threshold": {"threshold": settings.routing.threshold,
                                   "sample_rate": settings.routing.calibration_sample_rate, "by_app": baseline},
              "runs": {}}
    rows = []
    for name, rep in runs.items():
        apps = _per_app(rep)
        frontier_alone = {}
        for app in apps:
            subset = [s for s in stream if s.segment.app == app and s.human is not None and s.teacher is not None]
            frontier_alone[app] = sum(s.teacher == s.human for s in subset) / len(subset) if subset else None
        enough = {seg: s for seg, s in rep["segments"].items()
                  if not s["final_route_all"] and s["accepted"] >= 30}
        goals = {"accepted_agreement_at_least": 1 - rep["config"]["accepted_error_rate"],
                 "segments_meeting_it": {seg: s["accepted_accuracy_vs_teacher"] for seg, s in enough.items()}}
        result["runs"][name] = {"overall": {k: rep[k] for k in ("n", "accuracy_vs_human", "frontier_fraction",
                                                                 "accepted", "accepted_accuracy_vs_teacher",
                                                                 "accepted_accuracy_vs_human",
                                                                 "teacher_accuracy_vs_human",
                                                                 "extra_sample_fraction", "route_reasons",
                                                                 "policy_versions")},
                                "by_app": apps, "frontier_alone_by_app": frontier_alone,
                                "segments": rep["segments"], "alarms": rep["alarms"], "goals": goals,
                                "over_time": rep["over_time"]}
        for app, a in apps.items():
            rows.append((name, app, a["n"], a["frontier_fraction"], a["accuracy_vs_human"], frontier_alone[app],
                         judge_alone[app]))
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        policy_sim.plot_over_time(rep, OUT / f"shift.{slug}.png",
                                  f"shift: {train_set.stem} held out, then {new_app} (new app): {name}")
    for app, b in baseline.items():
        rows.append((f"global threshold {settings.routing.threshold}", app, b["n"], b["frontier_fraction"],
                     b["accuracy_vs_human"], None, judge_alone[app]))
    (OUT / "shift.json").write_text(json.dumps(result, indent=2))

    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    print(f"\nshift: judge trained on {train_set.name}; {len(held)} held-out items, {new_app} ({len(new)} items) "
          f"arriving as a new app after {head}; frontier = {args.frontier}")
    if novelty:
        print(f"novelty AUROC ({new_app} vs held-out {train_set.stem}): {novelty['auroc_new_vs_held_out']:.3f}; "
              f"novel at threshold: held-out {pct(novelty['novel_fraction_held_out'])}, "
              f"new {pct(novelty['novel_fraction_new'])}")
    print("\n| routing | app | items | routed to frontier | accuracy vs human | frontier alone | judge alone |")
    print("|---|---|---|---|---|---|---|")
    for name, app, n, frac, acc, alone, judge in rows:
        print(f"| {name} | {app} | {n} | {pct(frac)} | {pct(acc)} | {pct(alone)} | {pct(judge)} |")
    for name, r in result["runs"].items():
        print(f"{name}: accepted inline verdicts {r['overall']['accepted']}, agreement with {args.frontier} "
              f"{pct(r['overall']['accepted_accuracy_vs_teacher'])}, with humans "
              f"{pct(r['overall']['accepted_accuracy_vs_human'])}; extra sampling "
              f"{pct(r['overall']['extra_sample_fraction'])}; alarms {len(r['alarms'])}")
    print(f"wrote {OUT / 'shift.json'}")


if __name__ == "__main__":
    main()
