"""Verdicts out as OpenTelemetry ``gen_ai.evaluation.result`` events (OTLP/HTTP, the official SDK).

Contract:
- ``EvaluationEvents(settings, role)`` is a stage ``Recorder``: ``judged(stage, pairs)`` (called after the batch's
  rows are stored) emits one event per (trace, verdict) through an OpenTelemetry ``LoggerProvider`` whose
  ``BatchLogRecordProcessor`` sends ``ExportLogsServiceRequest`` protobufs to ``{otel.endpoint}/v1/logs`` with
  ``otel.headers`` (a secret: it goes into the request, never into a log).
- The event (``EVENT_NAME``) carries the GenAI evaluation attributes: ``gen_ai.evaluation.name`` (the criterion),
  ``gen_ai.evaluation.score.value`` (the verdict's score: P(pass) or P(A); 1/0/0.5 for a frontier label),
  ``gen_ai.evaluation.score.label`` (pass/fail/A/B/tie), ``gen_ai.evaluation.explanation`` where a critique exists,
  ``gen_ai.response.id`` where the judged span recorded one; and judgeline's own: ``judgeline.confidence``,
  ``judgeline.judge.tier`` (inline/frontier), ``judgeline.judge.name``, ``judgeline.judge.version``,
  ``judgeline.policy.version`` (the routing policy version an inline verdict was routed under),
  ``judgeline.route_reason`` where routed,
  ``judgeline.trace_id``, ``judgeline.tenant``, ``judgeline.app``, ``judgeline.schema_version`` (the schema the
  worker writes, ``schemas.versioning``).
- Parenting: when the trace came from an OTel span (its trace id is 32 hex digits, its span id 16), the event's
  context is that span's, so back-ends show it on the span they hold; otherwise the event has no parent.
- Best effort by design: the verdict is stored before the event leaves; a back-end that is down drops events (the
  SDK's queue), never verdicts, and never holds the stream. ``close()`` flushes and shuts the provider down.
- ``event_attributes(trace, verdict)`` is the attribute mapping alone (no I/O).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from judge_engine.online.frontier_stage import POSITIVE_SCORE
from judge_engine.online.pipeline import Recorder
from schemas import versioning
from schemas.settings import Settings
from schemas.trace import Trace
from schemas.verdict import FrontierVerdict, Verdict

EVENT_NAME = "gen_ai.evaluation.result"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


def parse_headers(raw: str | None) -> dict[str, str]:
    """``name=value,name=value`` (the OTEL_EXPORTER_OTLP_HEADERS form) as a mapping."""
    out: dict[str, str] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError("otel.headers: expected name=value pairs separated by commas "
                             "(JUDGELINE_OTEL__HEADERS='Authorization=Basic ...')")
        out[name.strip()] = value.strip()
    return out


def event_attributes(trace: Trace, verdict: Verdict | FrontierVerdict) -> dict[str, Any]:
    if isinstance(verdict, FrontierVerdict):
        tier, score, version, reason = "frontier", POSITIVE_SCORE[verdict.label], verdict.judge_name, \
            verdict.request_reason
    else:
        tier, score, version, reason = verdict.source, verdict.score, verdict.judge_version, verdict.route_reason
    attributes: dict[str, Any] = {
        "gen_ai.evaluation.name": verdict.criterion,
        "gen_ai.evaluation.score.value": float(score),
        "gen_ai.evaluation.score.label": verdict.label,
        "judgeline.confidence": float(verdict.confidence),
        "judgeline.judge.tier": tier,
        "judgeline.judge.name": verdict.judge_name,
        "judgeline.judge.version": version,
        "judgeline.trace_id": trace.trace_id,
        "judgeline.tenant": trace.tenant,
        "judgeline.app": trace.app,
        "judgeline.schema_version": versioning.current(),
    }
    if isinstance(verdict, Verdict):
        attributes["judgeline.policy.version"] = verdict.policy_version
    if verdict.critique:
        attributes["gen_ai.evaluation.explanation"] = verdict.critique
    response_id = trace.metadata.get("gen_ai.response.id")
    if isinstance(response_id, str) and response_id:
        attributes["gen_ai.response.id"] = response_id
    if reason:
        attributes["judgeline.route_reason"] = reason
    return attributes


def span_context(trace: Trace):
    """The OTel context of the judged span, or None when the trace did not come from a span."""
    from opentelemetry import trace as otel_trace

    trace_id, span_id = trace.trace_id.lower(), (trace.span_id or "").lower()
    if not (_TRACE_ID.match(trace_id) and _SPAN_ID.match(span_id)):
        return None
    parent = otel_trace.SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                    trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED))
    return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(parent))


class EvaluationEvents(Recorder):
    def __init__(self, settings: Settings, role: str):
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        otel = settings.otel
        headers = parse_headers(otel.headers.get_secret_value() if otel.headers is not None else None)
        exporter = OTLPLogExporter(endpoint=otel.endpoint.rstrip("/") + "/v1/logs", headers=headers,
                                   timeout=otel.timeout_s)
        self.provider = LoggerProvider(resource=Resource.create({"service.name": otel.service_name,
                                                                 "judgeline.worker.role": role}))
        self.provider.add_log_record_processor(BatchLogRecordProcessor(exporter,
                                                                       schedule_delay_millis=otel.export_delay_ms))
        self.logger = self.provider.get_logger("judgeline")

    def judged(self, stage: str, pairs: Sequence[tuple[Trace, Verdict | FrontierVerdict]]) -> None:
        for trace, verdict in pairs:
            self.emit(trace, verdict)

    def emit(self, trace: Trace, verdict: Verdict | FrontierVerdict) -> None:
        self.logger.emit(event_name=EVENT_NAME, context=span_context(trace),
                         attributes=event_attributes(trace, verdict))

    def flush(self, timeout_ms: int = 10_000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def close(self) -> None:
        self.provider.shutdown()
