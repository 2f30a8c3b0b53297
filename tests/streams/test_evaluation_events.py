"""Verdicts out as OTel ``gen_ai.evaluation.result`` events: the real SDK exports by OTLP/HTTP to a local receiver
(an http.server in the test that decodes the protobuf with opentelemetry-proto); the attributes and the parent span
are checked, from the stages in process and from a real ``judgeline worker``."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import uuid
from datetime import datetime, timezone

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from judge_engine.online.frontier_stage import FrontierStage
from judge_engine.online.inline import ConstantJudge, InlineStage
from judge_engine.online.pipeline import Incoming
from schemas import FrontierRequest, FrontierVerdict, Trace
from schemas.settings import Settings
from streams.evaluation_events import EVENT_NAME, EvaluationEvents, parse_headers

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


class Receiver:
    """An OTLP/HTTP logs endpoint on 127.0.0.1: every request's headers and decoded log records."""

    def __init__(self):
        self.requests: list[tuple[dict, ExportLogsServiceRequest, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers["Content-Length"]))
                message = ExportLogsServiceRequest()
                message.ParseFromString(body)
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, message, self.path))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(b"")

            def log_message(self, *args):
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def records(self):
        out = []
        for _, message, path in self.requests:
            assert path == "/v1/logs"
            for rl in message.resource_logs:
                resource = {a.key: _value(a.value) for a in rl.resource.attributes}
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        out.append((resource, r, {a.key: _value(a.value) for a in r.attributes}))
        return out

    def close(self):
        self.server.shutdown()


def _value(v):
    return getattr(v, v.WhichOneof("value"))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


TRACE_HEX, SPAN_HEX = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"


def otel_trace(trace_id=TRACE_HEX, span_id=SPAN_HEX, response_id="chatcmpl-42") -> Trace:
    return Trace.from_otel_span({
        "traceId": trace_id, "spanId": span_id, "startTimeUnixNano": str(int(T0.timestamp() * 1e9)),
        "attributes": [
            {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}])}},
            {"key": "gen_ai.output.messages", "value": {"stringValue": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "Paris."}]}])}},
            {"key": "gen_ai.response.id", "value": {"stringValue": response_id}},
            {"key": "judgeline.criterion", "value": {"stringValue": "correctness"}},
        ]})


def _incoming(values):
    return [Incoming(value=v, key=None, topic="t", partition=0, offset=i, timestamp=T0) for i, v in enumerate(values)]


async def _store_write(rows):
    return None


class Store:
    write = staticmethod(_store_write)


async def _publish(outbox):
    return None


def _settings(receiver, **otel):
    return Settings(routing={"threshold": 0.7, "calibration_sample_rate": 0.0, "without_policy": "threshold"},
                    otel={"evaluation_events": True, "endpoint": receiver.endpoint, "export_delay_ms": 50, **otel})


def test_inline_verdicts_leave_as_events_parented_to_the_judged_span(receiver):
    settings = _settings(receiver, headers="Authorization=Basic c2VjcmV0, x-tenant = acme")
    events = EvaluationEvents(settings, "inline")
    plain = Trace(trace_id="not-an-otel-id", kind="pointwise", question="q?", answer="a.", timestamp=T0)
    stage = InlineStage(settings, ConstantJudge(confidence=0.55), Store(), _publish, recorder=events)
    asyncio.run(stage.process(_incoming([otel_trace().to_bytes(), plain.to_bytes()])))
    assert events.flush()
    events.close()
    records = receiver.records()
    assert len(records) == 2
    headers = receiver.requests[0][0]
    assert headers["authorization"] == "Basic c2VjcmV0" and headers["x-tenant"] == "acme"
    by_trace = {attrs["judgeline.trace_id"]: (resource, r, attrs) for resource, r, attrs in records}
    resource, record, attrs = by_trace[TRACE_HEX]
    assert record.event_name == EVENT_NAME
    assert record.trace_id.hex() == TRACE_HEX and record.span_id.hex() == SPAN_HEX
    assert resource["service.name"] == "judgeline" and resource["judgeline.worker.role"] == "inline"
    assert attrs["gen_ai.evaluation.name"] == "correctness"
    assert attrs["gen_ai.evaluation.score.label"] == "pass"
    assert attrs["gen_ai.evaluation.score.value"] == pytest.approx(0.55)
    assert attrs["gen_ai.response.id"] == "chatcmpl-42"
    assert attrs["judgeline.confidence"] == pytest.approx(0.55)
    assert attrs["judgeline.judge.tier"] == "inline"
    assert (attrs["judgeline.judge.name"], attrs["judgeline.judge.version"]) == ("constant-stub", "stub")
    assert attrs["judgeline.policy.version"] == 0  # no routing policy published yet
    assert attrs["judgeline.route_reason"] == "low_confidence"  # 0.55 < 0.7
    assert "gen_ai.evaluation.explanation" not in attrs  # the inline judge writes no critique
    _, plain_record, plain_attrs = by_trace["not-an-otel-id"]
    assert plain_record.trace_id == b"" and plain_record.span_id == b""  # no span to parent it to
    assert "gen_ai.response.id" not in plain_attrs


class Frontier:
    async def judge_many(self, requests):
        return [FrontierVerdict(trace_id=r.trace.trace_id, kind="pointwise", criterion=r.trace.criterion,
                                judge_name="gpt-4o", status="ok" if i == 0 else "budget_exhausted",
                                label="fail" if i == 0 else None, confidence=0.5, critique="Lyon is not it.",
                                request_reason=r.reason, trace_time=T0) for i, r in enumerate(requests)]


def test_frontier_verdicts_leave_with_their_critique_and_failed_calls_do_not(receiver):
    settings = _settings(receiver)
    events = EvaluationEvents(settings, "frontier")
    other = otel_trace(trace_id="0" * 31 + "1", span_id="0" * 15 + "2")
    requests = [FrontierRequest(trace=otel_trace(), reason="calibration_sample"),
                FrontierRequest(trace=other, reason="low_confidence")]
    stage = FrontierStage(settings, Frontier(), Store(), _publish, recorder=events)
    asyncio.run(stage.process(_incoming([r.to_bytes() for r in requests])))
    assert events.flush()
    events.close()
    ((_, record, attrs),) = receiver.records()  # the budget_exhausted verdict has no label: no event
    assert record.trace_id.hex() == TRACE_HEX and record.span_id.hex() == SPAN_HEX
    assert attrs["judgeline.judge.tier"] == "frontier" and attrs["judgeline.judge.name"] == "gpt-4o"
    assert attrs["gen_ai.evaluation.score.label"] == "fail" and attrs["gen_ai.evaluation.score.value"] == 0.0
    assert attrs["gen_ai.evaluation.explanation"] == "Lyon is not it."
    assert attrs["judgeline.route_reason"] == "calibration_sample"
    assert "judgeline.policy.version" not in attrs  # the frontier's verdict is not routed under a policy


def test_headers_that_are_not_name_value_pairs_are_refused_naming_the_setting():
    assert parse_headers(None) == {} and parse_headers("a=b=c") == {"a": "b=c"}
    with pytest.raises(ValueError, match="otel.headers"):
        parse_headers("Authorization")


@pytest.mark.integration
def test_a_real_worker_sends_an_event_per_verdict_when_enabled(stack, store, receiver):
    from fault_support import FaultRun

    from stack.workers import wait_until

    _, base = store
    run = FaultRun.create(base)
    try:
        settings = run.settings.model_copy(update={"otel": run.settings.otel.model_copy(update={
            "evaluation_events": True, "endpoint": receiver.endpoint, "export_delay_ms": 100})})
        run.worker("inline", stub_ms=1.0, settings=settings)
        traces = [otel_trace(trace_id=uuid.uuid4().hex, span_id=uuid.uuid4().hex[:16], response_id=f"r{i}")
                  for i in range(12)]
        run.send(traces)
        run.wait_accounted(len(traces), timeout_s=120)
        assert wait_until(lambda: len(receiver.records()) >= len(traces), 30), len(receiver.records())
        spans = {(r.trace_id.hex(), r.span_id.hex()) for _, r, _ in receiver.records()}
        assert spans == {(t.trace_id, t.span_id) for t in traces}
        assert {a["gen_ai.response.id"] for _, _, a in receiver.records()} == {f"r{i}" for i in range(12)}
    finally:
        run.stop()
