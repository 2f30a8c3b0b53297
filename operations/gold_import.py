"""`judgeline gold import`: load a gold-format file into ClickHouse's ``gold_labels``, validated and idempotent.

Contract:
- ``import_gold(store, client, database, path, source=None)`` reads the file with ``schemas.gold.read_gold_file``;
  every line that does not validate becomes a ``LineError`` (``file:line: reason``, the reason naming the field and
  the fix, as ``judgeline validate`` prints it), and so does a second line with the same (source, criterion, id)
  (the gold format wants ids unique within a file; the first one is kept). The valid items are inserted, even when
  other lines are bad: nothing good is held back by a bad neighbour, and every bad line is reported.
- Inserts go through the sink (``streams.sink.ClickHouseStore.insert_sync``: clickhouse-connect's typed inserts,
  never SQL text built from values). ``gold_labels`` is a ReplacingMergeTree keyed by (source, criterion, id), so
  importing a file twice leaves the same rows (read with ``FINAL`` or ``gold_labels_latest``), and an item whose
  content changed replaces its older import (the newest ``imported_at`` wins).
- ``already_present`` counts the valid items whose key was in ``gold_labels`` before this import (they are written
  again and replace themselves); ``new`` the others.
- ``source`` overrides every item's ``source`` (the key changes with it, so the same file under two sources is two
  sets of rows).
- The join with the live path: ``judgeline produce --gold FILE`` (and the demo) publish each item as a trace whose
  ``trace_id`` is the item's ``id`` (``Trace.from_gold``) and whose criterion is the item's, so verdicts and frontier
  verdicts join the gold labels on ``trace_id = id AND criterion = criterion`` (the ``gold_by_id`` view; with
  ``produce --id-prefix P`` the trace id is ``P || id``, which ``judgeline calibrate --id-prefix P`` strips).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.gold import GoldLabel, read_gold_file


@dataclass(frozen=True)
class LineError:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ImportResult:
    path: str
    valid: int = 0
    new: int = 0
    already_present: int = 0
    errors: list[LineError] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def invalid(self) -> int:
        return len(self.errors)

    def summary(self) -> str:
        per_source = ", ".join(f"{s} {n}" for s, n in sorted(self.sources.items())) or "none"
        return (f"{self.path}: {self.valid} imported ({self.new} new, {self.already_present} already present and "
                f"replaced by this import), {self.invalid} invalid lines not imported; by source: {per_source}")


def parse(path: str | Path, source: str | None = None) -> tuple[list[GoldLabel], list[LineError]]:
    """The valid items of a gold file (source overridden if asked) and one error per bad or duplicate line."""
    items: list[GoldLabel] = []
    errors: list[LineError] = []
    first_line: dict[tuple[str, str, str], int] = {}
    for number, item in read_gold_file(path):
        if not isinstance(item, GoldLabel):
            errors.append(LineError(str(path), number, item.reason))
            continue
        if source is not None:
            item = item.model_copy(update={"source": source})
        key = (item.source, item.criterion, item.id)
        if key in first_line:
            errors.append(LineError(str(path), number, f"id: {item.id!r} (criterion {item.criterion!r}, source "
                                    f"{item.source!r}) repeats line {first_line[key]}; ids must be unique within a "
                                    "file, give this item another id"))
            continue
        first_line[key] = number
        items.append(item)
    return items, errors


def existing_keys(client: Any, database: str, sources: list[str]) -> set[tuple[str, str, str]]:
    if not sources:
        return set()
    rows = client.query(f"SELECT source, criterion, id FROM {database}.gold_labels FINAL "
                        "WHERE source IN {sources:Array(String)}", parameters={"sources": sources}).result_rows
    return {(str(s), str(c), str(i)) for s, c, i in rows}


def import_gold(store: Any, client: Any, database: str, path: str | Path, source: str | None = None
                ) -> ImportResult:
    """Validate ``path`` and insert its valid items through ``store`` (see the module contract)."""
    items, errors = parse(path, source)
    result = ImportResult(str(path), errors=errors)
    before = existing_keys(client, database, sorted({i.source for i in items}))
    result.already_present = sum((i.source, i.criterion, i.id) in before for i in items)
    result.valid = store.insert_sync("gold_labels", items)
    result.new = result.valid - result.already_present
    for item in items:
        result.sources[item.source] = result.sources.get(item.source, 0) + 1
    return result
