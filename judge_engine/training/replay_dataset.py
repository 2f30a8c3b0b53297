"""Retrain datasets from replayed traffic: traces joined with frontier verdicts and gold labels (pure, no I/O).

Contract:
- Input: ``Replayed`` traces (a ``Trace`` with the topic/partition/offset/timestamp it was read at), the frontier
  verdicts read back (``frontier_index``), and human gold labels (``GoldIndex``: rows of ``gold_labels`` or gold
  items; matched to a trace by content, ``dataset.fingerprint``, preferring the row whose id is the trace id; a
  pairwise gold row whose answers are in the other order has its label swapped into the trace's order).
- The label of a trace, first that exists: the frontier's verdict with status ``ok`` (the latest one of that trace
  whose kind and criterion match it) > the human gold label (``gold_labels``) > a human label the trace carries
  itself (``metadata.human_label``, valid for its kind) > none: the trace is counted ``unlabelled`` and left out.
  Each row records its ``label_source`` (``frontier:<judge>``, ``gold``, ``trace``).
- Deduplication: by trace id (a redelivered trace: the first read, by partition and offset, is kept), then by
  content fingerprint (the same judged item under other trace ids: the best-labelled one is kept, then the
  earliest). Every trace read is counted exactly once in ``counts``: ``duplicate_trace_id``, ``duplicate_content``,
  ``unlabelled`` or ``labelled``.
- Output rows are ``GoldLabel`` items (the gold format: a valid gold file, ``judgeline train`` reads it): the
  frontier's label as ``teacher[<judge>]`` (its other-order verdict as ``teacher_swapped``), the human label as
  ``human_label``, and ``meta`` with the label, its source, and where the trace was read. So
  ``judgeline train --gold FILE --teacher <judge> --fallback-human`` trains on exactly the precedence above.
- Augmentation reuses ``dataset.augment``: ``swap`` adds each pairwise row in the other answer order (labels
  swapped, id suffix ``#swap``); ``reference_drop`` P adds, for a deterministic fraction P of the rows that have a
  reference (by a hash of the trace id), a copy without it (suffix ``#noref``). Both are off by default because
  ``judgeline train`` applies them itself; they are for other trainers.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from judge_engine.dataset import Example, augment, fingerprint, item_dict
from schemas.base import LABELS_BY_KIND, MAX_ID_CHARS, SWAPPED_LABEL
from schemas.gold import GoldLabel
from schemas.trace import Trace
from schemas.verdict import FrontierVerdict

SOURCE = "judgeline-replay"
GOLD, TRACE = "gold", "trace"
FRONTIER_PREFIX = "frontier:"
RANK = {"frontier": 0, GOLD: 1, TRACE: 2}  # lower is a better label source


@dataclass(frozen=True)
class Replayed:
    trace: Trace
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None = None


def frontier_index(verdicts: Iterable[FrontierVerdict]) -> dict[str, FrontierVerdict]:
    """The latest frontier verdict with status ok per trace id (verdicts that could not be obtained are ignored)."""
    out: dict[str, FrontierVerdict] = {}
    for fv in verdicts:
        if fv.status != "ok" or fv.label is None:
            continue
        seen = out.get(fv.trace_id)
        if seen is None or fv.judged_at >= seen.judged_at:
            out[fv.trace_id] = fv
    return out


@dataclass(frozen=True)
class GoldMatch:
    label: str
    gold_id: str


class GoldIndex:
    """Human gold labels by content fingerprint (rows of ``gold_labels``, gold items or dicts with the same fields)."""

    def __init__(self, rows: Iterable[Any] = ()):
        self._by_fp: dict[str, list[dict]] = {}
        for row in rows:
            d = row if isinstance(row, Mapping) else row.model_dump()
            if not d.get("human_label"):
                continue
            self._by_fp.setdefault(fingerprint(d), []).append(dict(d))
        for candidates in self._by_fp.values():
            candidates.sort(key=lambda d: str(d.get("id")))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_fp.values())

    def match(self, trace: Trace) -> GoldMatch | None:
        candidates = self._by_fp.get(fingerprint(trace))
        if not candidates:
            return None
        row = next((d for d in candidates if d.get("id") == trace.trace_id), candidates[0])
        label = row["human_label"]
        if trace.kind == "pairwise" and trace.answer_a != trace.answer_b and row.get("answer_a") == trace.answer_b:
            label = SWAPPED_LABEL[label]  # the gold row shows the answers in the other order
        return GoldMatch(label, str(row.get("id")))


def trace_human_label(trace: Trace) -> str | None:
    """A human label carried by the trace itself (``metadata.human_label``), if it fits the trace's kind."""
    label = trace.metadata.get("human_label")
    return label if label in LABELS_BY_KIND[trace.kind] else None


@dataclass(frozen=True)
class Labelled:
    replayed: Replayed
    label: str
    label_source: str
    human_label: str | None
    frontier: FrontierVerdict | None = None
    gold_id: str | None = None

    @property
    def rank(self) -> int:
        return RANK["frontier" if self.frontier is not None else self.label_source]


def label_of(replayed: Replayed, frontier: Mapping[str, FrontierVerdict], gold: GoldIndex) -> Labelled | None:
    trace = replayed.trace
    match = gold.match(trace)
    human = match.label if match else trace_human_label(trace)
    fv = frontier.get(trace.trace_id)
    if fv is not None and (fv.kind, fv.criterion) == (trace.kind, trace.criterion):
        return Labelled(replayed, fv.label, f"{FRONTIER_PREFIX}{fv.judge_name}", human, fv,
                        match.gold_id if match else None)
    if match:
        return Labelled(replayed, match.label, GOLD, human, None, match.gold_id)
    if human:
        return Labelled(replayed, human, TRACE, human)
    return None


@dataclass
class ReplayDataset:
    rows: list[GoldLabel] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    label_sources: Counter = field(default_factory=Counter)  # of the deduplicated rows, before augmentation


def _order(r: Replayed) -> tuple:
    return (r.partition, r.offset)


def _in_fraction(key: str, fraction: float) -> bool:
    h = hashlib.sha256(f"reference-drop\x1f{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def _variant_id(trace_id: str, suffix: str) -> str:
    vid = f"{trace_id}{suffix}"
    if len(vid) <= MAX_ID_CHARS:
        return vid
    return f"{trace_id[: MAX_ID_CHARS - len(suffix) - 13]}~{hashlib.sha256(trace_id.encode()).hexdigest()[:12]}{suffix}"


def _rows(lab: Labelled, swap: bool, reference_drop: float) -> list[GoldLabel]:
    trace, fv = lab.replayed.trace, lab.frontier
    base = Example(item_dict(trace), lab.label, lab.label_source, lab.human_label, trace.trace_id, fingerprint(trace))
    drop = reference_drop > 0 and bool(base.item.get("reference")) and _in_fraction(trace.trace_id, reference_drop)
    rows, seen = [], set()
    for v in augment([base], swap=swap, reference_drop=drop):
        swapped = trace.kind == "pairwise" and v.item["answer_a"] != base.item["answer_a"]
        noref = bool(base.item.get("reference")) and not v.item.get("reference")
        suffix = ("#swap" if swapped else "") + ("#noref" if noref else "")
        if suffix in seen:  # the swapped copy of a pair with identical answers is the same item
            continue
        seen.add(suffix)
        teacher, teacher_swapped = {}, {}
        if fv is not None:
            teacher[fv.judge_name] = v.label
            if fv.label_swapped is not None:
                teacher_swapped[fv.judge_name] = SWAPPED_LABEL[fv.label_swapped] if swapped else fv.label_swapped
        r = lab.replayed
        meta = {
            "label": v.label, "label_source": lab.label_source, "trace_id": trace.trace_id,
            "augmentation": suffix.lstrip("#").replace("#", "+") or None, "gold_id": lab.gold_id,
            "tenant": trace.tenant, "app": trace.app, "model": trace.model,
            "topic": r.topic, "partition": r.partition, "offset": r.offset,
            "timestamp": r.timestamp.isoformat() if r.timestamp else None,
            "inline_label": fv.inline_label if fv and not swapped else None,
            "inline_judge_version": fv.inline_judge_version if fv else None,
        }
        rows.append(GoldLabel(
            id=_variant_id(trace.trace_id, suffix), source=SOURCE, kind=trace.kind, criterion=trace.criterion,
            question=trace.question, answer=v.item.get("answer"), answer_a=v.item.get("answer_a"),
            answer_b=v.item.get("answer_b"), reference=v.item.get("reference"), human_label=v.human_label,
            teacher=teacher, teacher_swapped=teacher_swapped, meta=meta))
    return rows


def build_dataset(traces: Iterable[Replayed], frontier: Mapping[str, FrontierVerdict], gold: GoldIndex, *,
                  swap: bool = False, reference_drop: float = 0.0) -> ReplayDataset:
    """Join, deduplicate, label and (optionally) augment; see the module contract."""
    if not 0.0 <= reference_drop <= 1.0:
        raise ValueError(f"reference_drop must be a fraction in [0, 1], got {reference_drop}")
    out = ReplayDataset()
    by_id: dict[str, Replayed] = {}
    for r in sorted(traces, key=_order):
        if r.trace.trace_id in by_id:
            out.counts["duplicate_trace_id"] += 1
        else:
            by_id[r.trace.trace_id] = r
    by_content: dict[str, Labelled] = {}
    for r in by_id.values():
        lab = label_of(r, frontier, gold)
        if lab is None:
            out.counts["unlabelled"] += 1
            continue
        fp = fingerprint(r.trace)
        kept = by_content.get(fp)
        if kept is None:
            by_content[fp] = lab
            continue
        out.counts["duplicate_content"] += 1
        if (lab.rank, _time_key(lab)) < (kept.rank, _time_key(kept)):
            by_content[fp] = lab
    kept_rows = sorted(by_content.values(), key=_time_key)
    out.counts["labelled"] = len(kept_rows)
    for lab in kept_rows:
        out.label_sources[lab.label_source] += 1
        out.rows.extend(_rows(lab, swap, reference_drop))
    out.counts["augmented"] = len(out.rows) - len(kept_rows)
    out.counts["written"] = len(out.rows)
    return out


def _time_key(lab: Labelled) -> tuple:
    r = lab.replayed
    return (r.timestamp.timestamp() if r.timestamp else 0.0, r.partition, r.offset)
