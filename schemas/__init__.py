"""Data contracts of judgeline: pydantic message models, settings and ClickHouse DDL. No I/O lives here.

- ``base``: label vocabulary, size limits, ``InvalidMessage`` (errors that name the field and the fix)
- ``versioning``: ``SCHEMA_VERSION`` and the one rule of which message versions a worker accepts
- ``trace``: ``Trace`` (also from OpenTelemetry GenAI spans and gold items)
- ``verdict``: ``Verdict``, ``FrontierRequest``, ``FrontierVerdict``, ``Disagreement``
- ``gold``: ``GoldLabel`` (one line of the gold format) and the gold-file reader
- ``dead_letter``: ``DeadLetter``
- ``settings``: the one frozen ``Settings`` object (env prefix ``JUDGELINE_``)
- ``ddl``: versioned ClickHouse migrations
- ``jsonschema``: JSON Schema export of every message type (checked in under ``schemas/json/``)
"""

from schemas.base import InvalidMessage, parse_json_bytes
from schemas.dead_letter import DeadLetter
from schemas.gold import GoldLabel
from schemas.trace import Trace
from schemas.verdict import Disagreement, FrontierRequest, FrontierVerdict, Verdict

__all__ = [
    "DeadLetter",
    "Disagreement",
    "FrontierRequest",
    "FrontierVerdict",
    "GoldLabel",
    "InvalidMessage",
    "Trace",
    "Verdict",
    "parse_json_bytes",
]
