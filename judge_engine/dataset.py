"""Training data for the student judge: gold-format files -> labelled examples, split, augmented (JudgeLM recipe).

Contract:
- ``load_gold(paths)`` reads gold-format files (``../shared/docs/gold-format.md``) with the one validator of
  ``schemas.gold``. Lines that do not parse raise ``GoldFileError`` listing each (file, line, field, fix), unless
  ``skip_invalid`` is set, in which case they are counted and reported, never silently dropped.
- ``label_examples(items, teacher, fallback_human)``: the target label is the chosen teacher's recorded verdict
  (``teacher`` in the file). Only when ``fallback_human`` is set does an item without that verdict fall back to
  its human label; ``teacher="human"`` trains on the human labels outright. Items without a usable label are
  counted per reason in the returned ``LabelReport``.
- ``split(examples, val, test, seed)`` is deterministic and grouped by question: every answer pair to one
  question lands in the same split, so the held-out split never shares a prompt with training.
- ``augment``: swap augmentation (each pairwise example also in the other answer order, label swapped) and
  reference drop (an example with a reference also appears without it, so the judge works with and without).
- ``fingerprint(item)`` identifies an item by its content, independent of answer order and id, so evaluation
  can refuse the items a judge was trained on even when they arrive from another file.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from schemas.base import SWAPPED_LABEL, InvalidMessage
from schemas.gold import GoldLabel, read_gold_file

HUMAN = "human"


class GoldFileError(ValueError):
    """Lines of gold-format files that do not parse; ``errors`` holds (path, line, reason)."""

    def __init__(self, errors: list[tuple[str, int, str]]):
        self.errors = errors
        shown = "\n".join(f"  {p}:{n}: {r}" for p, n, r in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(
            f"{len(errors)} line(s) are not valid gold-format items:\n{shown}{more}\n"
            "fix them (see docs/gold-format.md) or pass --skip-invalid to leave them out"
        )


@dataclass
class GoldFile:
    items: list[GoldLabel]
    invalid: list[tuple[str, int, str]] = field(default_factory=list)


def load_gold(paths: Iterable[str | Path], skip_invalid: bool = False) -> GoldFile:
    loaded = GoldFile(items=[])
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"gold file {path} does not exist")
        for line_no, parsed in read_gold_file(path):
            if isinstance(parsed, InvalidMessage):
                loaded.invalid.append((str(path), line_no, parsed.reason))
            else:
                loaded.items.append(parsed)
    if loaded.invalid and not skip_invalid:
        raise GoldFileError(loaded.invalid)
    return loaded


def item_dict(item) -> dict:
    """The fields a judge sees (``student`` items, Triton inputs), from a GoldLabel, Trace or dict."""
    get = item.get if isinstance(item, dict) else lambda k, d=None: getattr(item, k, d)
    out = {
        "kind": get("kind"),
        "criterion": get("criterion") or "overall",
        "question": get("question"),
        "reference": get("reference") or None,
    }
    if out["kind"] == "pairwise":
        out["answer_a"], out["answer_b"] = get("answer_a"), get("answer_b")
    else:
        out["answer"] = get("answer")
    return out


def fingerprint(item) -> str:
    d = item_dict(item)
    answers = sorted([d["answer_a"], d["answer_b"]]) if d["kind"] == "pairwise" else [d["answer"]]
    blob = "\x1f".join([d["kind"], d["criterion"], d["question"], *answers])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Example:
    item: dict
    label: str
    label_source: str  # "teacher:<name>" or "human"
    human_label: str | None
    source_id: str
    fingerprint: str


@dataclass
class LabelReport:
    used: Counter = field(default_factory=Counter)  # label source -> count
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def label_examples(items: Iterable[GoldLabel], teacher: str = "gpt-4", fallback_human: bool = False):
    examples: list[Example] = []
    report = LabelReport()
    for it in items:
        if teacher == HUMAN:
            label, source = it.human_label, HUMAN
        elif it.teacher.get(teacher) is not None:
            label, source = it.teacher[teacher], f"teacher:{teacher}"
        elif fallback_human:
            label, source = it.human_label, HUMAN
        else:
            report.skipped[f"no {teacher} verdict (pass --fallback-human to use the human label)"] += 1
            continue
        if label is None:
            report.skipped["no label"] += 1
            continue
        report.used[source] += 1
        examples.append(Example(item_dict(it), label, source, it.human_label, it.id, fingerprint(it)))
    return examples, report


def _bucket(question: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}\x1f{question}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split(examples: list[Example], val: float = 0.15, test: float = 0.25, seed: int = 13) -> dict[str, list[Example]]:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val ({val}) and test ({test}) must be fractions in [0, 1) that sum to less than 1")
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for ex in examples:
        b = _bucket(ex.item["question"], seed)
        parts["test" if b < test else "val" if b < test + val else "train"].append(ex)
    return parts


def swapped(ex: Example) -> Example:
    item = dict(ex.item, answer_a=ex.item["answer_b"], answer_b=ex.item["answer_a"])
    human = SWAPPED_LABEL[ex.human_label] if ex.human_label else None
    return replace(ex, item=item, label=SWAPPED_LABEL[ex.label], human_label=human)


def augment(examples: Iterable[Example], swap: bool = True, reference_drop: bool = True) -> list[Example]:
    out: list[Example] = []
    for ex in examples:
        variants = [ex]
        if reference_drop and ex.item.get("reference"):
            variants.append(replace(ex, item=dict(ex.item, reference=None)))
        if swap and ex.item["kind"] == "pairwise":
            variants += [swapped(v) for v in variants]
        out.extend(variants)
    return out
