"""Training data for the student judge: gold-format files -> labelled examples, split, augmented (JudgeLM recipe).

Contract:
- ``load_gold(paths)`` reads gold-format files (``../shared/docs/gold-format.md``) with the one validator of
  ``schemas.gold``. Lines that do not parse raise ``GoldFileError`` listing each (file, line, field, fix), unless
  ``skip_invalid`` is set, in which case they are counted and reported, never silently dropped. Gzipped files
  (``.jsonl.gz``) are streamed. ``sample_per_file=N`` keeps a uniform random sample of N valid items of each file
  (reservoir sampling while streaming, seeded: the same N and seed give the same items), so a 60k-pair file
  costs the memory of N items.
- ``label_examples(items, teacher, fallback_human)``: the target label is a teacher's recorded verdict
  (``teacher`` in the file); ``teacher`` may be one name or several in order of preference (the first with a
  verdict on the item wins). Only when ``fallback_human`` is set does an item without any of those verdicts fall
  back to its human label; ``teacher="human"`` trains on the human labels outright. Items without a usable label
  are counted per reason in the returned ``LabelReport``. Where a teacher label's item carries
  ``meta.teacher_prob_b`` (the teacher's preference for answer B in [0, 1]), the example's ``target`` is soft:
  ``[1 - p, p, 0]`` over (A, B, tie) (a tie stays a one-hot tie); otherwise ``target`` is the one-hot label.
- ``length_balance(examples, seed)``: a length-controlled sample of the pairwise examples: every pair the
  shorter answer won, as many (at random) of those the longer answer won, all ties and equal-length pairs;
  pointwise examples pass through. Counts are returned so the effect can be reported.
- ``split(examples, val, test, seed)`` is deterministic and grouped by question: every answer pair to one
  question lands in the same split, so the held-out split never shares a prompt with training.
- ``augment``: swap augmentation (each pairwise example also in the other answer order, label and soft target
  swapped) and
  reference drop (an example with a reference also appears without it, so the judge works with and without).
- ``fingerprint(item)`` identifies an item by its content, independent of answer order and id, so evaluation
  can refuse the items a judge was trained on even when they arrive from another file.
"""

from __future__ import annotations

import hashlib
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from schemas.base import SWAPPED_LABEL, InvalidMessage
from schemas.gold import GoldLabel, read_gold_file

HUMAN = "human"
LABEL_ORDER = {"pairwise": ("A", "B", "tie"), "pointwise": ("pass", "fail")}  # = verdict_math.LABELS
_WORD = re.compile(r"\w+")


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


def _valid_lines(path: Path, loaded: GoldFile, progress: Callable[[int], None] | None):
    """The valid items of one file, in order; invalid lines go to ``loaded.invalid``."""
    try:
        for line_no, parsed in read_gold_file(path):
            if progress:
                progress(1)
            if isinstance(parsed, InvalidMessage):
                loaded.invalid.append((str(path), line_no, parsed.reason))
            else:
                yield parsed
    except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt .gz
        raise ValueError(f"gold file {path} cannot be read ({e}); is it a complete gzip file?") from e


def load_gold(paths: Iterable[str | Path], skip_invalid: bool = False, sample_per_file: int | None = None,
              seed: int = 13, progress: Callable[[int], None] | None = None) -> GoldFile:
    """``progress(n)`` is called per line read (a progress bar's ``update``)."""
    if sample_per_file is not None and sample_per_file < 1:
        raise ValueError(f"sample_per_file must be at least 1 (got {sample_per_file}); omit it to keep every item")
    loaded = GoldFile(items=[])
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"gold file {path} does not exist")
        if sample_per_file is None:
            loaded.items.extend(_valid_lines(path, loaded, progress))
            continue
        rng, reservoir = random.Random(f"{seed}\x1f{path.name}"), []
        for seen, item in enumerate(_valid_lines(path, loaded, progress)):
            if seen < sample_per_file:
                reservoir.append(item)
            elif (j := rng.randrange(seen + 1)) < sample_per_file:
                reservoir[j] = item
        loaded.items.extend(reservoir)
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
    soft: tuple[float, ...] | None = None  # a soft target in LABEL_ORDER[kind], where the teacher gave one

    @property
    def target(self) -> tuple[float, ...]:
        """The training target: the soft one, else the one-hot label, in ``LABEL_ORDER[kind]``."""
        if self.soft is not None:
            return self.soft
        order = LABEL_ORDER[self.item["kind"]]
        return tuple(float(lab == self.label) for lab in order)


@dataclass
class LabelReport:
    used: Counter = field(default_factory=Counter)  # label source -> count
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    soft: int = 0  # examples with a soft target


def _soft_target(item: GoldLabel, label: str) -> tuple[float, ...] | None:
    p = item.meta.get("teacher_prob_b")
    if item.kind != "pairwise" or label == "tie" or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        return None
    return (1.0 - float(p), float(p), 0.0)


def teachers_of(teacher: str | Sequence[str]) -> tuple[str, ...]:
    names = (teacher,) if isinstance(teacher, str) else tuple(teacher)
    if not names:
        raise ValueError("no teacher given: pass --teacher NAME (repeatable, in order of preference) or 'human'")
    if HUMAN in names and len(names) > 1:
        raise ValueError("--teacher human cannot be combined with other teachers; use --fallback-human instead")
    return names


def label_examples(items: Iterable[GoldLabel], teacher: str | Sequence[str] = "gpt-4", fallback_human: bool = False):
    names = teachers_of(teacher)
    examples: list[Example] = []
    report = LabelReport()
    for it in items:
        soft = None
        chosen = next((t for t in names if t != HUMAN and it.teacher.get(t) is not None), None)
        if names == (HUMAN,):
            label, source = it.human_label, HUMAN
        elif chosen is not None:
            label, source = it.teacher[chosen], f"teacher:{chosen}"
            soft = _soft_target(it, label)
        elif fallback_human:
            label, source = it.human_label, HUMAN
        else:
            report.skipped[f"no {' / '.join(names)} verdict (pass --fallback-human to use the human label)"] += 1
            continue
        if label is None:
            report.skipped["no label"] += 1
            continue
        report.used[source] += 1
        report.soft += soft is not None
        examples.append(Example(item_dict(it), label, source, it.human_label, it.id, fingerprint(it), soft))
    return examples, report


def words(text: str) -> int:
    return len(_WORD.findall(text))


def longer_answer(item: dict) -> str | None:
    """"A" or "B", whichever pairwise answer has more words; None on equal length."""
    a, b = words(item["answer_a"]), words(item["answer_b"])
    return None if a == b else "A" if a > b else "B"


def length_balance(examples: list[Example], seed: int = 13) -> tuple[list[Example], dict]:
    shorter, longer, rest = [], [], []
    for ex in examples:
        long = longer_answer(ex.item) if ex.item["kind"] == "pairwise" and ex.label != "tie" else None
        (rest if long is None else longer if ex.label == long else shorter).append(ex)
    rng = random.Random(seed)
    kept_longer = rng.sample(longer, min(len(longer), len(shorter)))
    keep = {id(e) for e in shorter + kept_longer + rest}
    out = [e for e in examples if id(e) in keep]  # the input order, for a deterministic split
    return out, {"shorter_won": len(shorter), "longer_won": len(longer), "longer_won_kept": len(kept_longer),
                 "other": len(rest), "kept": len(out)}


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
    soft = (ex.soft[1], ex.soft[0], *ex.soft[2:]) if ex.soft is not None else None
    return replace(ex, item=item, label=SWAPPED_LABEL[ex.label], human_label=human, soft=soft)


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
