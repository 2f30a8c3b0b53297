"""OpenTelemetry spans straight from Kafka: messages as the Collector's Kafka exporter writes them (bytes from the
official SDK's OTLP encoder, ``otlp_proto``, and their protojson form, ``otlp_json``) fan out to traces; other
spans are skipped and counted; a message that does not decode is dead-lettered whole. In process, then through the
real broker and a real inline worker."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from judge_engine.online.pipeline import Incoming
from judge_engine.online.span_ingest import SpanIngestStage, ingest_batch
from schemas import Trace
from schemas.settings import Settings

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def _messages(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def collector_spans(n_chat: int = 3, invalid: int = 0, service: str = "shop-assistant"):
    """Finished SDK spans: per request an HTTP server span holding a database span and a GenAI chat span (the
    shape an instrumented app emits), plus ``invalid`` chat spans without a completion."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for i in range(n_chat):
        with tracer.start_as_current_span("POST /ask"):
            with tracer.start_as_current_span("SELECT products", attributes={"db.system": "postgresql"}):
                pass
            with tracer.start_as_current_span("chat gpt-4o", attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                    "gen_ai.input.messages": _messages("user", f"Which shoe fits a wide foot? #{i}"),
                    "gen_ai.output.messages": _messages("assistant", f"The Wide Runner, size {40 + i}."),
                    "gen_ai.response.id": f"chatcmpl-{i}"}):
                pass
    for i in range(invalid):
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.input.messages": _messages("user", "No answer?")}):
            pass
    with tracer.start_as_current_span("embeddings", attributes={"gen_ai.operation.name": "embeddings"}):
        pass
    provider.shutdown()
    return exporter.get_finished_spans()


def otlp_proto(spans) -> bytes:
    """The bytes of the Collector's Kafka exporter with its default encoding."""
    return encode_spans(spans).SerializeToString()


def otlp_json(spans) -> bytes:
    """The protojson form (``otlp_json``): ids as hex, as OTLP/JSON specifies."""
    data = MessageToDict(encode_spans(spans))
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return json.dumps(data).encode()


def chat_ids(spans) -> set[tuple[str, str]]:
    return {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")) for s in spans
            if s.attributes.get("gen_ai.operation.name") == "chat" and "gen_ai.output.messages" in s.attributes}


def _incoming(values, topic="otlp_spans"):
    return [Incoming(value=v, key=None, topic=topic, partition=0, offset=i, timestamp=T0) for i, v in enumerate(values)]


@pytest.mark.parametrize("encoding,encode", [("otlp_proto", otlp_proto), ("otlp_json", otlp_json)])
def test_one_collector_message_fans_out_to_a_trace_per_chat_span(encoding, encode):
    spans = collector_spans(n_chat=3)
    outcome = ingest_batch(_incoming([encode(spans)]), encoding)
    assert {(t.trace_id, t.span_id) for t in outcome.traces} == chat_ids(spans)
    assert outcome.skipped_spans == 3 * 2 + 1  # HTTP and database spans per request, the embeddings span
    assert outcome.dead_letters == []
    first = min(outcome.traces, key=lambda t: t.question)
    assert first.question == "Which shoe fits a wide foot? #0" and first.answer == "The Wide Runner, size 40."
    assert first.app == "shop-assistant" and first.model == "gpt-4o"
    assert first.metadata["gen_ai.response.id"] == "chatcmpl-0"


def test_a_message_that_does_not_decode_is_dead_lettered_whole_and_an_invalid_chat_span_names_itself():
    spans = collector_spans(n_chat=2, invalid=1)
    garbage = b"\x0a\xff\xff\xff not protobuf"
    outcome = ingest_batch(_incoming([garbage, otlp_proto(spans), b'{"resourceSpans": []}']), "otlp_proto")
    assert len(outcome.traces) == 2  # the message's valid chat spans are still judged
    by_offset = {d.offset: d for d in outcome.dead_letters}
    assert sorted(by_offset) == [0, 1, 2]
    assert by_offset[0].raw == garbage and "not OTLP protobuf" in by_offset[0].error
    assert by_offset[0].error.count("otel.spans_encoding") == 1
    assert by_offset[1].raw == otlp_proto(spans)
    assert "1 GenAI chat span(s)" in by_offset[1].error and "gen_ai.output.messages" in by_offset[1].error
    assert all(d.stage == "parse" for d in outcome.dead_letters)
    json_outcome = ingest_batch(_incoming([b"{not json"]), "otlp_json")
    assert "not OTLP/JSON" in json_outcome.dead_letters[0].error


def test_the_stage_publishes_traces_keyed_by_trace_id_after_storing_dead_letters():
    settings = Settings()
    log, published = [], []

    class Store:
        async def write(self, rows):
            log.append(("stored", len(rows.dead_letters)))

    async def publish(outbox):
        log.append(("published", len(outbox)))
        published.extend(outbox.messages)

    stage = SpanIngestStage(settings, None, Store(), publish)
    spans = collector_spans(n_chat=2)
    asyncio.run(stage.process(_incoming([otlp_proto(spans), b"junk"])))
    assert log == [("stored", 1), ("published", 3)]
    traces = [(k, Trace.model_validate_json(v)) for t, k, v in published if t == settings.kafka.topics.traces]
    assert {(t.trace_id, t.span_id) for _, t in traces} == chat_ids(spans)
    assert all(k == t.trace_id.encode() for k, t in traces)
    assert stage.stats["skipped_spans"] == 2 * 2 + 1


@pytest.mark.integration
def test_collector_messages_through_the_real_broker_and_worker_become_verdicts(stack, store):
    from fault_support import FaultRun

    from operations.produce import produce
    from stack.topics import ensure_topics

    _, base = store
    run = FaultRun.create(base)
    try:
        topic = f"otlp_spans.{run.run_id}"
        run.settings = run.settings.model_copy(update={"otel": run.settings.otel.model_copy(update={
            "ingest_spans": True, "spans_topic": topic})})
        assert topic in ensure_topics(run.settings)
        run.worker("inline", stub_ms=1.0)
        batches = [collector_spans(n_chat=4, service=f"svc-{i}") for i in range(3)]
        messages = [(None, otlp_proto(spans)) for spans in batches] + [(b"bad", b"\x0a\xff garbage")]
        result = produce(run.settings, messages, topic=topic)
        assert (result.sent, result.failed) == (4, 0)
        expected = set().union(*(chat_ids(spans) for spans in batches))
        run.wait_accounted(len(expected) + 1, timeout_s=120)
        rows = run.rows("SELECT trace_id, app FROM {db}.verdicts FINAL")
        assert {t for t, _ in rows} == {t for t, _ in expected}
        assert {a for _, a in rows} == {"svc-0", "svc-1", "svc-2"}
        letters = run.rows("SELECT topic, key, error FROM {db}.dead_letters FINAL")
        assert [(t, k) for t, k, _ in letters] == [(topic, "bad")] and "not OTLP protobuf" in letters[0][2]
    finally:
        run.stop()
