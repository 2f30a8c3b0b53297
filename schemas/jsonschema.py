"""JSON Schema of every message type, as checked into ``schemas/json/``.

Contract: ``schemas()`` is the source of truth (derived from the pydantic models); ``judgeline schemas export``
writes it to ``schemas/json/<Name>.json`` and the tests fail when the checked-in files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.dead_letter import DeadLetter
from schemas.gold import GoldLabel
from schemas.trace import Trace
from schemas.verdict import Disagreement, FrontierRequest, FrontierVerdict, Verdict

MESSAGE_TYPES = (Trace, Verdict, FrontierRequest, FrontierVerdict, Disagreement, GoldLabel, DeadLetter)
JSON_DIR = Path(__file__).parent / "json"


def schemas() -> dict[str, dict[str, Any]]:
    return {m.__name__: m.model_json_schema(mode="validation") for m in MESSAGE_TYPES}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
