"""`GoldLabel`: one line of the gold format (``../shared/docs/gold-format.md``), a human-labelled judge item.

Contract:
- Field names and the label vocabulary are those of the gold format; a retrain dataset written by judgeline is a
  valid gold file too.
- The human label and every teacher label must fit the item's kind; answers must match the kind.
- ``read_gold_file`` yields ``(line_number, item_or_error)`` so callers can report every bad line and go on; a
  file whose name ends in ``.gz`` is read gzipped, streamed line by line (never decompressed whole).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field, model_validator

from schemas.base import (
    InvalidMessage,
    JudgedItem,
    Label,
    Name,
    check_label,
    parse_json_bytes,
)


class GoldLabel(JudgedItem):
    unknown_fields_into = "meta"  # a newer minor's unknown fields: meta["_unknown"] (schemas.versioning)

    id: Name
    source: Name
    human_label: Label | None = None
    teacher: dict[str, Label | None] = Field(default_factory=dict)
    teacher_swapped: dict[str, Label | None] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_kind(self) -> "GoldLabel":
        labels = {"human_label": self.human_label}
        labels.update({f"teacher.{k}": v for k, v in self.teacher.items()})
        labels.update({f"teacher_swapped.{k}": v for k, v in self.teacher_swapped.items()})
        for field, label in labels.items():
            check_label(self.kind, label, field)
        return self


def read_gold_file(path: str | Path) -> Iterator[tuple[int, GoldLabel | InvalidMessage]]:
    """Each non-blank line of a gold file as (1-based line number, item or the error that line raised)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, parse_json_bytes(GoldLabel, line.rstrip(b"\r\n"), max_bytes=4 * 1024 * 1024)
            except InvalidMessage as e:
                yield number, e
