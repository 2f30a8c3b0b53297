"""The span-ingest stage: OpenTelemetry Collector Kafka exporter messages -> traces on the traces topic.

Contract:
- One message is one whole ``ExportTraceServiceRequest`` as the Collector's Kafka exporter writes it, encoded
  ``otlp_proto`` (its default) or ``otlp_json`` (``settings.otel.spans_encoding``). ``spans_of(raw, encoding)``
  decodes it into OTLP/JSON span mappings (ids as hex, attributes as ``{key, value: {stringValue|...}}``, each with
  its resource), or raises ``InvalidMessage`` naming what is wrong.
- ``is_genai_chat(span)``: a span is a GenAI chat span when ``gen_ai.operation.name`` is ``chat``, or when it has no
  operation name but records ``gen_ai.input.messages``. Other spans (HTTP, database, embeddings...) are skipped and
  counted (``skipped_spans``), never dead-lettered.
- ``ingest_batch(messages, settings)`` (pure): each message fans out to one ``Trace`` per GenAI chat span
  (``Trace.from_otel_span``). A message that does not decode becomes a dead letter (stage ``parse``) whole; a
  message holding a GenAI chat span that is not a valid trace (no user message, no answer, ...) also becomes a dead
  letter whole, naming each such span and the field, while its valid spans still become traces (replaying the
  fixed message re-sends them: a trace's verdict is keyed by its id, so it is stored once).
- ``SpanIngestStage.process(messages)`` publishes the traces to ``kafka.topics.traces`` (key: the trace id) and
  the dead letters to the dead-letter topic, after storing the dead letters; it returns only when all of it is
  durable, so the caller acknowledges the collector's messages after that (at-least-once).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Sequence

from judge_engine.online.pipeline import BatchStage, Incoming, Outbox, Rows, dead_letter
from schemas.base import InvalidMessage
from schemas.dead_letter import DeadLetter
from schemas.trace import Trace

Encoding = Literal["otlp_proto", "otlp_json"]
MAX_SPAN_ERRORS = 20  # span errors named in one dead letter (the count says how many more)


@dataclass
class IngestOutcome:
    traces: list[Trace] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped_spans: int = 0


def _hex_ids(span: dict[str, Any]) -> dict[str, Any]:
    """MessageToDict writes bytes fields as base64; OTLP/JSON (and ``Trace.from_otel_span``) wants hex."""
    for name in ("traceId", "spanId", "parentSpanId"):
        if span.get(name):
            span[name] = base64.b64decode(span[name]).hex()
    return span


def _request_dict(raw: bytes, encoding: Encoding) -> Mapping[str, Any]:
    if encoding == "otlp_json":
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidMessage("ExportTraceServiceRequest", f"(message): not OTLP/JSON ({e}); the collector's "
                                 "exporter encoding must match otel.spans_encoding") from None
        if not isinstance(data, dict):
            raise InvalidMessage("ExportTraceServiceRequest", "(message): OTLP/JSON must be an object with "
                                 "resourceSpans")
        return data
    from google.protobuf.json_format import MessageToDict
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as e:
        raise InvalidMessage("ExportTraceServiceRequest", f"(message): not OTLP protobuf ({e}); the collector's "
                             "exporter encoding must match otel.spans_encoding") from None
    data = MessageToDict(request)
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                _hex_ids(span)
    return data


def spans_of(raw: bytes, encoding: Encoding) -> list[dict[str, Any]]:
    data = _request_dict(raw, encoding)
    resource_spans = data.get("resourceSpans")
    if not isinstance(resource_spans, list) or not resource_spans:
        raise InvalidMessage("ExportTraceServiceRequest", "resourceSpans: missing or empty; the message is not "
                             "an OTLP trace export")
    out: list[dict[str, Any]] = []
    for rs in resource_spans:
        if not isinstance(rs, dict):
            raise InvalidMessage("ExportTraceServiceRequest", "resourceSpans[]: expected objects")
        resource = rs.get("resource") or {}
        for ss in rs.get("scopeSpans") or []:
            for span in (ss.get("spans") or []) if isinstance(ss, dict) else []:
                if isinstance(span, dict):
                    out.append({**span, "resource": resource})
    return out


def _attribute(span: Mapping[str, Any], key: str) -> Any:
    for item in span.get("attributes") or []:
        if isinstance(item, dict) and item.get("key") == key:
            value = item.get("value") or {}
            return next(iter(value.values()), None) if isinstance(value, dict) else value
    return None


def is_genai_chat(span: Mapping[str, Any]) -> bool:
    operation = _attribute(span, "gen_ai.operation.name")
    if operation is not None:
        return operation == "chat"
    return _attribute(span, "gen_ai.input.messages") is not None


def _traces(spans: Sequence[dict[str, Any]]) -> Iterator[Trace | tuple[dict[str, Any], str]]:
    for span in spans:
        try:
            yield Trace.from_otel_span(span)
        except InvalidMessage as e:
            yield span, e.reason


def ingest_batch(messages: Sequence[Incoming], encoding: Encoding) -> IngestOutcome:
    outcome = IngestOutcome()
    for message in messages:
        if message.value is None:
            outcome.dead_letters.append(dead_letter(message, "(message): empty value (a tombstone); the collector "
                                                             "sends an ExportTraceServiceRequest", "parse"))
            continue
        try:
            spans = spans_of(message.value, encoding)
        except InvalidMessage as e:
            outcome.dead_letters.append(dead_letter(message, e.reason, "parse"))
            continue
        chat = [s for s in spans if is_genai_chat(s)]
        outcome.skipped_spans += len(spans) - len(chat)
        errors = []
        for result in _traces(chat):
            if isinstance(result, Trace):
                outcome.traces.append(result)
            else:
                span, reason = result
                errors.append(f"span {span.get('spanId') or '?'} of trace {span.get('traceId') or '?'}: {reason}")
        if errors:
            more = f" (and {len(errors) - MAX_SPAN_ERRORS} more)" if len(errors) > MAX_SPAN_ERRORS else ""
            outcome.dead_letters.append(dead_letter(
                message, f"{len(errors)} GenAI chat span(s) are not valid traces{more}; the message's other spans "
                         f"were judged: " + "; ".join(errors[:MAX_SPAN_ERRORS]), "parse"))
    return outcome


class SpanIngestStage(BatchStage):
    """Collector messages -> traces topic (see the module contract). Use one per event loop."""

    name = "span_ingest"

    async def process(self, messages: Sequence[Incoming]) -> IngestOutcome:
        if not messages:
            return IngestOutcome()
        outcome = ingest_batch(messages, self.settings.otel.spans_encoding)
        topics = self.settings.kafka.topics
        outbox = Outbox()
        for trace in outcome.traces:
            outbox.add(topics.traces, trace.trace_id, trace.to_bytes())
        outbox.add_dead_letters(topics.dead_letters, outcome.dead_letters)
        await self._store_then_publish(Rows(dead_letters=outcome.dead_letters), outbox, consumed=len(messages))
        self._tally(Counter(messages=len(messages), traces=len(outcome.traces), skipped_spans=outcome.skipped_spans,
                            dead_letters=len(outcome.dead_letters), batches=1))
        return outcome
