"""`Trace`: one production LLM interaction to be judged, as it arrives on the traces topic.

Contract:
- A trace is pointwise (one ``answer``, judged pass/fail on a ``criterion``) or pairwise (``answer_a`` and
  ``answer_b``, judged A/B/tie). The answer fields must match the kind; anything else is rejected naming the field.
- ``reference`` (a reference answer) and ``context`` (retrieved documents, for groundedness) are optional.
- ``from_otel_span`` builds a trace from an OpenTelemetry GenAI span (OTLP/JSON or a flat attribute mapping),
  reading ``gen_ai.input.messages`` / ``gen_ai.output.messages`` and the judgeline attributes listed there.
- ``row_keys`` gives the ``schemas.trace_row.TraceRow`` fields of a row about the trace (``trace_time`` is its
  ``timestamp``).
- ``from_gold`` builds the trace a gold-format item describes (for streaming gold and demo sets).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping

from pydantic import Field

from schemas.base import (
    DEFAULT_CRITERION,
    Identifier,
    InvalidMessage,
    JudgedItem,
    Metadata,
    Name,
    Text,
    UtcDatetime,
    utc_now,
    validate,
)
from schemas.trace_row import TRACE_ROW_FIELDS

# a row key that the trace holds under another name: a row's trace_time is the trace's own timestamp
_ROW_KEY_SOURCES = {"trace_time": "timestamp"}


class Trace(JudgedItem):
    unknown_fields_into = "metadata"  # a newer minor's unknown fields: metadata["_unknown"] (schemas.versioning)

    trace_id: Identifier
    span_id: Identifier | None = None
    timestamp: UtcDatetime = Field(default_factory=utc_now)
    tenant: Name = "default"
    app: Name = "default"
    model: Name | None = None
    context: Text | None = None
    metadata: Metadata = Field(default_factory=dict)

    def row_keys(self) -> dict[str, Any]:
        """The fields of ``schemas.trace_row.TraceRow`` that every row about this trace carries (verdicts, frontier
        verdicts, disagreements, shadow verdicts): its identity, its kind and criterion, and its time (the
        partition of those tables), named by ``TRACE_ROW_FIELDS``."""
        return {name: getattr(self, _ROW_KEY_SOURCES.get(name, name)) for name in TRACE_ROW_FIELDS}

    @classmethod
    def from_gold(cls, item: Any, **overrides: Any) -> "Trace":
        """The trace a gold item (``schemas.gold.GoldLabel``) describes; its id becomes the trace id."""
        fields: dict[str, Any] = {
            "trace_id": item.id,
            "app": item.source[:128] or "gold",
            "kind": item.kind,
            "criterion": item.criterion,
            "question": item.question,
            "answer": item.answer,
            "answer_a": item.answer_a,
            "answer_b": item.answer_b,
            "reference": item.reference,
            "metadata": {"gold_source": item.source},
        }
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_otel_span(cls, span: Mapping[str, Any]) -> "Trace":
        """Build a trace from an OpenTelemetry GenAI span.

        Accepts OTLP/JSON spans (``traceId``, ``spanId``, ``startTimeUnixNano``, ``attributes`` as a list of
        ``{key, value: {stringValue|intValue|...}}``) and flat spans (``trace_id``, ``span_id``, ``attributes`` as a
        mapping). Read attributes: ``gen_ai.input.messages``, ``gen_ai.output.messages`` (JSON strings or lists of
        ``{role, parts: [{type: "text", content}]}``), ``gen_ai.request.model`` / ``gen_ai.response.model``, and
        ``judgeline.kind|criterion|reference|context|app|tenant|answer_b`` (``service.name`` is the app fallback).
        A pairwise span carries the second answer in ``judgeline.answer_b``.
        """
        attrs = _otel_attributes(span.get("attributes", {}))
        resource = _otel_attributes((span.get("resource") or {}).get("attributes", {}))
        trace_id = span.get("traceId") or span.get("trace_id")
        if not trace_id:
            raise InvalidMessage("Trace", "traceId: required field is missing from the span; add it")
        inputs = _messages(attrs.get("gen_ai.input.messages"), "gen_ai.input.messages")
        outputs = _messages(attrs.get("gen_ai.output.messages"), "gen_ai.output.messages")
        question = _join_text(m for m in inputs if m.get("role") == "user")
        if not question:
            raise InvalidMessage(
                "Trace", "gen_ai.input.messages: no user message with text; record the prompt on the span"
            )
        answer = _join_text(m for m in outputs if m.get("role", "assistant") == "assistant")
        if not answer:
            raise InvalidMessage(
                "Trace", "gen_ai.output.messages: no assistant message with text; record the completion on the span"
            )
        tool_context = _join_text(m for m in inputs if m.get("role") == "tool")
        kind = attrs.get("judgeline.kind") or ("pairwise" if "judgeline.answer_b" in attrs else "pointwise")
        fields: dict[str, Any] = {
            "trace_id": str(trace_id),
            "span_id": span.get("spanId") or span.get("span_id"),
            "timestamp": _otel_time(span),
            "tenant": attrs.get("judgeline.tenant") or resource.get("judgeline.tenant") or "default",
            "app": attrs.get("judgeline.app") or resource.get("service.name") or attrs.get("service.name")
            or "default",
            "model": attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model"),
            "kind": kind,
            "criterion": attrs.get("judgeline.criterion") or DEFAULT_CRITERION,
            "question": question,
            "reference": attrs.get("judgeline.reference"),
            "context": attrs.get("judgeline.context") or tool_context or None,
            "metadata": {
                k: v
                for k, v in attrs.items()
                if k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.response.id")
            },
        }
        if kind == "pairwise":
            fields["answer_a"] = answer
            fields["answer_b"] = attrs.get("judgeline.answer_b")
        else:
            fields["answer"] = answer
        return validate(cls, {k: v for k, v in fields.items() if v is not None})


def _otel_attributes(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    out: dict[str, Any] = {}
    for item in raw or []:
        if not isinstance(item, Mapping) or "key" not in item:
            continue
        value = item.get("value", {})
        if isinstance(value, Mapping):
            for typ in ("stringValue", "intValue", "doubleValue", "boolValue"):
                if typ in value:
                    out[item["key"]] = value[typ]
                    break
            else:
                if "arrayValue" in value:
                    out[item["key"]] = [
                        next(iter(v.values()), None) for v in value["arrayValue"].get("values", [])
                    ]
        else:
            out[item["key"]] = value
    return out


def _messages(raw: Any, attr: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InvalidMessage("Trace", f"{attr}: not JSON ({e.msg}); record the messages as a JSON array")
    if not isinstance(raw, list):
        raise InvalidMessage("Trace", f"{attr}: expected a list of messages, got {type(raw).__name__}")
    return [m for m in raw if isinstance(m, dict)]


def _join_text(messages: Any) -> str:
    texts: list[str] = []
    for m in messages:
        if isinstance(m.get("content"), str):  # older flat form
            texts.append(m["content"])
        for part in m.get("parts") or []:
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("content"), str):
                texts.append(part["content"])
    return "\n".join(t for t in texts if t)


def _otel_time(span: Mapping[str, Any]) -> datetime:
    nanos = span.get("startTimeUnixNano") or span.get("start_time_unix_nano")
    if nanos:
        return datetime.fromtimestamp(int(nanos) / 1e9, tz=timezone.utc)
    ts = span.get("timestamp") or span.get("start_time")
    return datetime.fromisoformat(ts) if isinstance(ts, str) else utc_now()
