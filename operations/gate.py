"""The deployment gate of `judgeline export` and `judgeline deploy`: a judge version must earn its place on the
gold labels in ClickHouse, and every decision is recorded in ``judge_versions``.

Contract:
- ``assess(settings, client, candidate, repository, version, action, force)`` judges the human-labelled items of
  ``gold_labels`` (at most ``settings.gate.max_items``, a fixed hash-ordered sample beyond that) of the kinds the
  candidate was trained for, leaving out every item it was trained or calibrated on (content fingerprint, as
  ``judgeline eval`` does), in process with the candidate's own files (``student.Judge``: the code Triton runs).
- The candidate is refused when its Cohen's kappa vs the gold labels is below ``settings.gate.min_kappa`` (0.6
  by default), when no held-out gold item of its kinds is stored, or when it is worse (lower kappa) than the
  version in service on the same gold items (those neither version was trained on). The version in service is the
  highest numbered version of the model in ``repository`` other than the candidate (the one Triton's ``latest``
  policy serves); without one there is nothing to compare with.
- The decision is ``accepted``, ``refused``, or ``forced`` (refused but ``force`` was given); its reasons, the
  figures (kappa and accuracy on the held-out gold, both versions' kappa on the shared items, the training's
  held-out figures) and the bias meters (``judge_engine.evaluation.bias``: longer-answer and first-position
  preference of the candidate, teacher and humans, accuracy where the shorter answer won) are stored as one
  ``schemas.judge_version.JudgeVersionRecord`` row of ``judge_versions`` (through the sink's typed insert, never
  SQL built from values) before the caller acts on it.
- ``recorded_decision(client, database, judge_name, version)``: the latest recorded decision of a version, or None;
  ``judgeline deploy`` loads a version without assessing it again when it was accepted or forced.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from judge_engine.dataset import fingerprint
from judge_engine.evaluation import bias, metrics
from judge_engine.model.verdict_math import LABELS
from schemas.settings import Settings

ACCEPTED, REFUSED, FORCED = "accepted", "refused", "forced"
GOLD_COLUMNS = ("id", "source", "kind", "criterion", "question", "answer", "answer_a", "answer_b", "reference",
                "human_label", "teacher")


@dataclass
class Decision:
    decision: str
    reasons: list[str]
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.decision in (ACCEPTED, FORCED)

    def summary(self) -> str:
        r = self.row
        lines = [f"gate: judge {r['judge_name']} version {r['version']} ({r['action']}): {self.decision.upper()}",
                 f"  kappa vs gold {_num(r['gold_kappa'])} (bar {r['min_kappa']:.2f}), accuracy "
                 f"{_num(r['gold_accuracy'])} on {r['gold_n']} held-out gold items"]
        if r["serving_version"]:
            lines.append(f"  vs version {r['serving_version']} in service on the same {r['compared_n']} items: kappa "
                         f"{_num(r['candidate_kappa_compared'])} vs {_num(r['serving_kappa_compared'])}")
        lines.append(f"  longer answer wins: candidate {_num(r['longer_wins'])}, teacher "
                     f"{_num(r['teacher_longer_wins'])}, humans {_num(r['human_longer_wins'])}; first position "
                     f"wins {_num(r['first_wins'])}; accuracy where the shorter answer won "
                     f"{_num(r['shorter_won_accuracy'])}")
        lines += [f"  refused because {reason}" for reason in self.reasons]
        return "\n".join(lines)


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _finite(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def read_gold(client: Any, database: str, limit: int) -> list[dict]:
    """Human-labelled gold items as judge items (dicts), a fixed hash-ordered sample of at most ``limit``."""
    result = client.query(
        f"SELECT {', '.join(GOLD_COLUMNS)} FROM {database}.gold_labels FINAL WHERE human_label != '' "
        "ORDER BY cityHash64(source, criterion, id) LIMIT {limit:UInt32}", parameters={"limit": limit})
    return [dict(zip(GOLD_COLUMNS, row)) for row in result.result_rows]


def serving_version(repository: Path, model_name: str, candidate: str | None) -> str | None:
    from judge_engine.training.export import versions

    others = [v for v in versions(Path(repository) / model_name) if str(v) != str(candidate)]
    return str(others[-1]) if others else None


def _judge(model_dir: Path, items: list[dict]) -> tuple[list[str], list[str | None], dict]:
    from judge_engine.dataset import item_dict
    from judge_engine.model.student import Judge

    judge = Judge(model_dir)
    pred: list[str] = []
    first: list[str | None] = []
    rows = [item_dict(it) for it in items]
    for start in range(0, len(rows), 32):
        for v in judge.judge(rows[start : start + 32], first_order=True):
            pred.append(v["label"])
            first.append(v.get("first_order_label"))
    return pred, first, judge.meta


def _kappa(pred: list, human: list, kinds: set[str]) -> float | None:
    labels = [lab for k in sorted(kinds) for lab in LABELS[k]]
    return _finite(metrics.cohen_kappa(pred, human, labels)) if pred else None


def _meta(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "student.json").read_text())


def assess(settings: Settings, client: Any, candidate: Path, repository: Path, version: str, action: str,
           force: bool = False) -> Decision:
    gate, database, name = settings.gate, settings.clickhouse.database, settings.triton.model_name
    meta = _meta(candidate)
    kinds = set(meta.get("trained_kinds", ["pairwise", "pointwise"]))
    seen = set(meta.get("trained_on", []))
    items = [g for g in read_gold(client, database, gate.max_items) if g["kind"] in kinds and fingerprint(g) not in seen]
    reasons: list[str] = []
    pred, first = ([], [])
    if items:
        pred, first, _ = _judge(candidate, items)
    else:
        reasons.append(f"ClickHouse holds no human-labelled gold item of its kinds ({', '.join(sorted(kinds))}) that "
                       "it was not trained on: import some with `judgeline gold import FILE`")
    human = [g["human_label"] for g in items]
    kappa = _kappa(pred, human, kinds)
    if items and (kappa is None or kappa < gate.min_kappa):
        reasons.append(f"its kappa vs the gold labels is {_num(kappa)}, below the bar of {gate.min_kappa:.2f} "
                       f"(JUDGELINE_GATE__MIN_KAPPA) on {len(items)} held-out gold items")
    serving = serving_version(repository, name, version)
    compared = {"n": 0, "candidate": None, "serving": None}
    if serving and items:
        serving_dir = Path(repository) / name / serving
        serving_seen = set(_meta(serving_dir).get("trained_on", []))
        idx = [i for i, g in enumerate(items) if fingerprint(g) not in serving_seen]
        if idx:
            s_pred, _, _ = _judge(serving_dir, [items[i] for i in idx])
            shared_human = [human[i] for i in idx]
            compared = {"n": len(idx), "candidate": _kappa([pred[i] for i in idx], shared_human, kinds),
                        "serving": _kappa(s_pred, shared_human, kinds)}
            low = -2.0  # an undefined kappa (one label only) ranks below every defined one
            candidate_k = low if compared["candidate"] is None else compared["candidate"]
            if candidate_k < (low if compared["serving"] is None else compared["serving"]):
                reasons.append(f"it is worse than version {serving} in service on the same {len(idx)} gold items "
                               f"(kappa {_num(compared['candidate'])} vs {_num(compared['serving'])})")
    teacher_name = meta.get("teacher") or "gpt-4"
    teacher = [(g.get("teacher") or {}).get(teacher_name) for g in items]
    meters = bias.meters(items, {"student": {"labels": pred, "first_order": first},
                                 "teacher": {"labels": teacher}}, human)
    decision = ACCEPTED if not reasons else FORCED if force else REFUSED
    trained_at = meta.get("trained_at")
    row = {
        "judge_name": name,
        "version": str(version),
        "action": action,
        "model_dir": str(Path(candidate).resolve()),
        "arch": meta.get("heads", {}).get("arch", "bi"),
        "teacher": ",".join(meta.get("teachers") or [teacher_name]),
        "created_at": datetime.fromisoformat(trained_at) if trained_at else datetime.now(timezone.utc),
        "held_out": json.dumps(meta.get("test_metrics", {}), default=float),
        "gold_n": len(items),
        "gold_accuracy": _finite(metrics.accuracy(pred, human)) if items else None,
        "gold_kappa": kappa,
        "serving_version": serving or "",
        "compared_n": compared["n"],
        "candidate_kappa_compared": compared["candidate"],
        "serving_kappa_compared": compared["serving"],
        "longer_wins": meters["student"]["longer_wins"]["rate"],
        "first_wins": meters["student"]["first_wins"]["rate"],
        "shorter_won_accuracy": meters["student"]["accuracy_where_shorter_won"]["rate"],
        "teacher_longer_wins": meters["teacher"]["longer_wins"]["rate"],
        "human_longer_wins": meters["human"]["longer_wins"]["rate"],
        "bias": json.dumps(meters),
        "decision": decision,
        "reasons": "\n".join(reasons),
        "decided_at": datetime.now(timezone.utc),
    }
    from schemas.judge_version import JudgeVersionRecord
    from streams.sink import ClickHouseStore

    record = JudgeVersionRecord(**row)
    ClickHouseStore(settings, client=client).insert_sync("judge_versions", [record])
    return Decision(decision, reasons, {**record.model_dump(), "min_kappa": gate.min_kappa})


def recorded_decision(client: Any, database: str, judge_name: str, version: str) -> str | None:
    rows = client.query(
        f"SELECT argMax(decision, decided_at) FROM {database}.judge_versions FINAL "
        "WHERE judge_name = {name:String} AND version = {version:String} HAVING count() > 0",
        parameters={"name": judge_name, "version": str(version)}).result_rows
    return rows[0][0] if rows else None
