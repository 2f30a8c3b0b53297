"""`judgeline eval`: measure the served judge on a gold-format file, against humans and against a teacher.

Contract:
- Reads any gold-format file (lines that do not parse: ``GoldFileError`` listing each, unless ``skip_invalid``),
  judges every item through the running Triton judge (``TritonJudge``, concurrent micro-batches), and never
  scores an item the served version was trained or calibrated on: those are recognised by content fingerprint
  from the version's ``student.json`` in the model repository and left out (counted in ``excluded_trained``).
  When that file is not readable here (a remote Triton) the report says so in ``trained_items_checked: false``.
- The JSON (stable keys, rates as fractions in [0, 1], undefined values null) has at its top level ``n``,
  ``accuracy_vs_human``, ``accuracy_vs_teacher``, ``macro_f1_vs_human``, ``kappa_vs_human``, ``swap_consistency``
  (pairwise items; null without any), ``ece`` (confidence against agreement with the human label),
  ``judge_version`` and ``cascade``: one ``{threshold, frontier_fraction, accuracy_vs_human, ...}`` per threshold,
  where an item whose confidence is below the threshold takes the recorded teacher verdict (the file's
  ``teacher[<frontier>]``). Also: ``by_kind`` (the same per kind, TPR/TNR for pointwise), ``teacher`` and
  ``teacher_accuracy_vs_human`` (the frontier alone), ``at_threshold`` (the cascade at ``--threshold``),
  ``ece_vs_teacher``, ``majority_baseline_vs_human``.
- ``bias`` (pairwise items; null without any): for ``student``, ``teacher`` and ``human`` on the same items,
  ``longer_wins`` (P(the longer answer wins | not a tie)), ``first_wins`` (P(A wins | not a tie); the student's
  before order combination, which the served verdict hides: computed by the same version's code and weights in
  process from the model repository, null when that is not readable here) and ``accuracy_where_shorter_won``
  (accuracy vs human on the pairs the human gave to the shorter answer); each ``{rate, n}``
  (``judge_engine.evaluation.bias``).
- With ``policy``: the top-level ``policy`` object is the routing controller simulated over the items in file order
  (``policy_sim.simulate``: ``accuracy_vs_human``, ``frontier_fraction``, ``accepted_accuracy_vs_teacher``,
  ``accepted_accuracy_vs_human``, per segment and over time), starting from the served version's own validation
  evidence (its ``student.json``; none when that is not readable here: every segment then starts routed); the
  segment of an item is (default, its source, kind, criterion), as ``Trace.from_gold`` streams it; an item whose
  served novelty is above the version's threshold routes as ``novel`` (``novel_fraction``).
- Writes the JSON, ``<out stem>.cascade.png`` and ``<out stem>.reliability.png`` (and ``<out stem>.policy.png``
  with ``policy``); ``format_table`` renders the printed summary.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from pathlib import Path

from judge_engine.clients.triton_client import TritonJudge
from judge_engine.dataset import fingerprint, load_gold
from judge_engine.evaluation import bias, metrics, plots, policy_sim
from judge_engine.model.verdict_math import LABELS
from judge_engine.online.policy import Segment
from judge_engine.training.export import trained_on
from schemas.settings import Settings


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _block(pred, conf, consistent, human, teacher, kinds_present) -> dict:
    labels = [lab for k in kinds_present for lab in LABELS[k]]
    correct_h = [None if h is None else p == h for p, h in zip(pred, human)]
    correct_t = [None if t is None else p == t for p, t in zip(pred, teacher)]
    majority = Counter(h for h in human if h is not None).most_common(1)
    out = {
        "n": len(pred),
        "accuracy_vs_human": metrics.accuracy(pred, human),
        "accuracy_vs_teacher": metrics.accuracy(pred, teacher),
        "n_with_teacher": metrics.count_scored(pred, teacher),
        "macro_f1_vs_human": metrics.macro_f1(pred, human, labels),
        "kappa_vs_human": metrics.cohen_kappa(pred, human, labels),
        "kappa_vs_teacher": metrics.cohen_kappa(pred, teacher, labels),
        "swap_consistency": (sum(c for c in consistent if c is not None) / sum(c is not None for c in consistent))
        if any(c is not None for c in consistent) else None,
        "ece": metrics.expected_calibration_error(conf, correct_h),
        "ece_vs_teacher": metrics.expected_calibration_error(conf, correct_t),
        "teacher_accuracy_vs_human": metrics.accuracy(teacher, human),
        "majority_baseline_vs_human": metrics.accuracy([majority[0][0]] * len(human), human) if majority else None,
    }
    if kinds_present == ["pointwise"]:
        out["tpr_vs_human"], out["tnr_vs_human"] = metrics.tpr_tnr(pred, human)
    return out


async def _judge_all(settings: Settings, items: list, batch_size: int, concurrency: int):
    # an offline run queues many batches behind one another: allow each request a generous deadline
    triton = settings.triton.model_copy(update={"timeout_s": max(settings.triton.timeout_s, 120.0)})
    async with TritonJudge(triton) as judge:
        gate = asyncio.Semaphore(concurrency)

        async def one(chunk):
            async with gate:
                return await judge.judge(chunk)

        chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        parts = await asyncio.gather(*(one(c) for c in chunks))
    return [r for p in parts for r in p]


def first_order_labels(version_dir: Path | None, items: list) -> list[str | None] | None:
    """The served version's pairwise labels in the given answer order alone (before order combination), from its
    code and weights in process; None when the version directory is not readable here."""
    if version_dir is None or not (version_dir / "student.json").is_file():
        return None
    from judge_engine.dataset import item_dict
    from judge_engine.model.student import Judge

    judge = Judge(version_dir)
    rows = [item_dict(it) for it in items]
    labels: list[str | None] = []
    for start in range(0, len(rows), 32):
        labels += [v.get("first_order_label") for v in judge.judge(rows[start : start + 32], first_order=True)]
    return labels


def bias_report(items: list, pred: list, first_order: list | None, teacher: list, human: list) -> dict | None:
    """``bias.meters`` for student, teacher and humans on the pairwise items; None without any."""
    idx = [i for i, it in enumerate(items) if it.kind == "pairwise"]
    if not idx:
        return None
    pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
    student = {"labels": pick(pred)}
    report = bias.meters(pick(items), {"student": student, "teacher": {"labels": pick(teacher)}}, pick(human))
    if first_order is None:
        report["student"]["first_wins"] = {"rate": None, "n": 0}
    else:
        report["student"]["first_wins"] = bias.first_wins(pick(items), pick(first_order))
    return report


def evaluate(
    settings: Settings,
    gold: Path,
    frontier: str | None = None,
    threshold: float | None = None,
    thresholds: list[float] | None = None,
    out: Path | None = None,
    include_trained: bool = False,
    skip_invalid: bool = False,
    batch_size: int = 16,
    concurrency: int = 2,
    repository: Path | None = None,
    policy: bool = False,
    update_every: int = 50,
) -> dict:
    loaded = load_gold([gold], skip_invalid=skip_invalid)
    items = loaded.items
    name = settings.triton.model_name
    version_hint = settings.triton.model_version

    async def metadata_version():
        async with TritonJudge(settings.triton) as judge:
            meta = await judge.client.get_model_metadata(name, version_hint)
            return version_hint or max(meta.versions, key=int)

    served = asyncio.run(metadata_version())
    seen = trained_on(repository, name, served) if repository else None
    meta_file = repository / name / str(served) / "student.json" if repository else None
    student_meta = json.loads(meta_file.read_text()) if meta_file and meta_file.is_file() else {}
    judge_teacher = student_meta.get("teacher")
    excluded = 0
    if seen is not None and not include_trained:
        kept = [it for it in items if fingerprint(it) not in seen]
        excluded = len(items) - len(kept)
        items = kept
    if not items:
        raise ValueError(
            f"nothing to evaluate in {gold}: all {excluded} valid items were used to train judge version {served}"
        )
    teacher_name = frontier or (judge_teacher if judge_teacher not in (None, "human") else "gpt-4")
    results = asyncio.run(_judge_all(settings, items, batch_size, concurrency))
    version = served
    if any(r.model_version != str(version) for r in results):
        versions = sorted({r.model_version for r in results})
        raise RuntimeError(f"the served judge changed version during the evaluation ({versions}); run it again")

    pred = [r.label for r in results]
    conf = [r.confidence for r in results]
    consistent = [r.swap_consistent if it.kind == "pairwise" else None for r, it in zip(results, items)]
    human = [it.human_label for it in items]
    teacher = [it.teacher.get(teacher_name) for it in items]
    kinds = sorted({it.kind for it in items})
    report = {
        **_block(pred, conf, consistent, human, teacher, kinds),
        "judge_name": name,
        "judge_version": str(version),
        "teacher": teacher_name,
        "gold_file": str(gold),
        "invalid_lines": len(loaded.invalid),
        "excluded_trained": excluded,
        "trained_items_checked": seen is not None,
    }
    report["bias"] = bias_report(items, pred, first_order_labels(meta_file.parent if meta_file else None, items)
                                 if "pairwise" in kinds else None, teacher, human)
    report["by_kind"] = {}
    for kind in kinds:
        idx = [i for i, it in enumerate(items) if it.kind == kind]
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        report["by_kind"][kind] = _block(pick(pred), pick(conf), pick(consistent), pick(human), pick(teacher), [kind])
    cascade = metrics.cascade_curve(pred, conf, teacher, human, thresholds)
    report["cascade"] = [dict(p) for p in cascade]
    t = settings.routing.threshold if threshold is None else threshold
    report["at_threshold"] = dict(metrics.cascade_curve(pred, conf, teacher, human, [t])[0])
    if policy:
        report["policy"] = _policy_block(settings, items, results, teacher, human, student_meta, update_every)
    report = _clean(report)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        stem = out.with_suffix("")
        plots.cascade_curve(
            report["cascade"], Path(f"{stem}.cascade.png"),
            f"{Path(gold).name}: judge v{version} + {teacher_name} below threshold",
            {f"{teacher_name} alone": report["teacher_accuracy_vs_human"] or 0.0},
        )
        correct = [None if h is None else p == h for p, h in zip(pred, human)]
        plots.reliability_diagram({f"judge v{version} vs human": metrics.reliability_bins(conf, correct)},
                                  Path(f"{stem}.reliability.png"), f"{Path(gold).name}: reliability")
        if policy:
            policy_sim.plot_over_time(report["policy"], Path(f"{stem}.policy.png"),
                                      f"{Path(gold).name}: judge v{version} under the routing policy over time")
    return report


def _policy_block(settings: Settings, items: list, results: list, teacher, human, student_meta: dict,
                  update_every: int) -> dict:
    """The streaming controller simulated over the items in file order (``policy_sim``), starting from the
    version's validation evidence only; an item is novel above the version's own novelty threshold (the served
    score is the distance over that threshold: above 1)."""
    threshold = (student_meta.get("novelty") or {}).get("threshold")
    stream = [policy_sim.StreamItem(it.id, Segment("default", it.source[:128] or "gold", it.kind, it.criterion),
                                    r.label, r.confidence, t, h,
                                    novel=r.novelty is not None and r.novelty > 1.0)
              for it, r, t, h in zip(items, results, teacher, human)]
    prior = policy_sim.validation_evidence(student_meta)
    cfg = policy_sim.SimConfig.from_settings(settings.routing, update_every=update_every)
    report = policy_sim.simulate(stream, prior, cfg)
    report["novelty_threshold"] = threshold
    report["novel_fraction"] = sum(s.novel for s in stream) / len(stream)
    return report


def _pct(v) -> str:
    return "  n/a" if v is None else f"{100 * v:5.1f}%"


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def format_table(report: dict) -> str:
    rows = [
        f"judge {report['judge_name']} v{report['judge_version']} on {report['gold_file']}: n={report['n']} "
        f"(left out {report['excluded_trained']} trained-on items"
        + ("" if report["trained_items_checked"] else "; NOT checked: model repository not readable here") + ")",
        f"  accuracy vs human      {_pct(report['accuracy_vs_human'])}   "
        f"(teacher {report['teacher']} alone {_pct(report['teacher_accuracy_vs_human'])}, "
        f"majority label {_pct(report['majority_baseline_vs_human'])})",
        f"  accuracy vs {report['teacher']:<10} {_pct(report['accuracy_vs_teacher'])}",
        f"  macro-F1 vs human      {_pct(report['macro_f1_vs_human'])}",
        f"  kappa vs human         {_num(report['kappa_vs_human'])}",
        f"  swap consistency       {_pct(report['swap_consistency'])}",
        f"  ECE (vs human)         {_num(report['ece'])}   (vs teacher {_num(report['ece_vs_teacher'])})",
        "  cascade: threshold  routed  accuracy vs human",
    ]
    for p in report["cascade"]:
        rows.append(f"           {p['threshold']:9.3g}  {_pct(p['frontier_fraction'])}  {_pct(p['accuracy_vs_human'])}")
    if report.get("bias"):
        b = report["bias"]
        rows.append("  bias (pairwise)        student  teacher  human")
        for key, title in (("longer_wins", "longer answer wins"), ("first_wins", "first position wins"),
                           ("accuracy_where_shorter_won", "acc. where shorter won")):
            rows.append(f"    {title:<21}{_pct(b['student'][key]['rate'])}  {_pct(b['teacher'][key]['rate'])}  "
                        f"{_pct(b['human'][key]['rate'])}")
    a = report["at_threshold"]
    rows.append(f"  at threshold {a['threshold']:.2f}: {_pct(a['frontier_fraction'])} routed, "
                f"accuracy {_pct(a['accuracy_vs_human'])}")
    if "policy" in report:
        rows.append(policy_sim.format_policy(report["policy"], report["teacher"]))
    return "\n".join(rows)
