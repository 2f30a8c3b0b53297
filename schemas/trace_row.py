"""`TraceRow`: the identity every row about one trace carries (verdicts, frontier verdicts, disagreements, shadow
verdicts), declared once.

Contract:
- ``TraceRow`` is a ``schemas.base.Message`` holding the trace's identity fields, in this order, first after
  ``schema_version``: ``trace_id``, ``tenant`` (default ``"default"``), ``app`` (default ``"default"``), ``kind``,
  ``criterion`` and ``trace_time`` (the trace's own time, the partition of those tables). A row model derives from
  it and declares only its own fields after them.
- ``TRACE_ROW_FIELDS`` names those fields in order; ``schemas.trace.Trace.row_keys`` builds its keys from it, so
  the keys a trace gives and the fields a row takes cannot drift apart. ``TraceRow.row_keys`` gives the same keys
  from a row (a disagreement takes them from the inline verdict).
- The field order is the order of a model's columns (``streams.sink.COLUMNS``) and of the ``required`` lists of
  the exported JSON Schemas, never of the wire: a message is a JSON object keyed by name, so moving the identity
  fields first needs no ``schema_version`` change (``schemas.versioning``).
"""

from __future__ import annotations

from typing import Any

from schemas.base import Identifier, Kind, Message, Name, UtcDatetime


class TraceRow(Message):
    """Base of a row about one trace: its identity, kind, criterion and time (see the module contract)."""

    trace_id: Identifier
    tenant: Name = "default"
    app: Name = "default"
    kind: Kind
    criterion: Name
    trace_time: UtcDatetime

    def row_keys(self) -> dict[str, Any]:
        """This row's identity fields (``TRACE_ROW_FIELDS``): the keys of another row about the same trace."""
        return {name: getattr(self, name) for name in TRACE_ROW_FIELDS}


# the identity fields in declaration order (Message's own schema_version is the message's, not the trace's)
TRACE_ROW_FIELDS: tuple[str, ...] = tuple(name for name in TraceRow.model_fields if name not in Message.model_fields)
