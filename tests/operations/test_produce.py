"""`judgeline produce`: traces from gold files and OTel spans, bad lines reported, keyed and timestamped messages."""

import json
import time
import uuid

import pytest
from typer.testing import CliRunner

from cli.main import app
from operations.produce import (
    malformed_messages,
    produce,
    traces_from_gold,
    traces_from_otel,
)
from schemas import InvalidMessage, Trace
from schemas.base import parse_json_bytes


def test_gold_items_become_traces_with_prefixed_ids(sample_gold, tmp_path):
    out = list(traces_from_gold(sample_gold, "run1-"))
    assert len(out) == 460 and all(isinstance(t, Trace) for _, t in out)
    first = out[0][1]
    assert first.trace_id == "run1-sample-pair-0" and first.kind == "pairwise" and first.reference
    bad = tmp_path / "bad.jsonl"
    bad.write_text(sample_gold.read_text().splitlines()[0] + "\n" + '{"id": "x", "kind": "pairwise"}\n')
    parsed = list(traces_from_gold(bad))
    assert isinstance(parsed[0][1], Trace) and parsed[1][0] == 2 and isinstance(parsed[1][1], InvalidMessage)


def _span(trace_id: str, question: str, answer: str) -> dict:
    return {"traceId": trace_id, "spanId": "s1", "startTimeUnixNano": "1790000000000000000",
            "attributes": [
                {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": question}]}])}},
                {"key": "gen_ai.output.messages", "value": {"stringValue": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}])}},
                {"key": "judgeline.criterion", "value": {"stringValue": "hallucination"}}]}


def test_otel_spans_one_per_line_or_whole_exports(tmp_path):
    export = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bot"}}]},
                                 "scopeSpans": [{"spans": [_span("a1", "Q1?", "A1."), _span("a2", "Q2?", "A2.")]}]}]}
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join([json.dumps(_span("s0", "Capital of Peru?", "Lima.")), json.dumps(export), "not json",
                               json.dumps({"traceId": "x", "attributes": {}})]) + "\n")
    out = list(traces_from_otel(path, "p-"))
    good = [(n, t.trace_id, t.app) for n, t in out if isinstance(t, Trace)]
    assert good == [(1, "p-s0", "default"), (2, "p-a1", "bot"), (2, "p-a2", "bot")]
    errors = [(n, e.reason) for n, e in out if isinstance(e, InvalidMessage)]
    assert [n for n, _ in errors] == [3, 4] and "not JSON" in errors[0][1] and "gen_ai.input.messages" in errors[1][1]


def test_malformed_messages_are_all_rejected_by_the_trace_schema():
    messages = malformed_messages(6, "r-")
    assert [k for k, _ in messages] == [f"r-bad-{i}".encode() for i in range(6)]
    for _, value in messages:
        with pytest.raises(InvalidMessage):
            parse_json_bytes(Trace, value)


def test_cli_needs_exactly_one_source(tmp_path):
    result = CliRunner().invoke(app, ["produce"])
    assert result.exit_code == 1 and "exactly one of --gold" in result.output


def test_cli_refuses_a_negative_linger(sample_gold):
    result = CliRunner().invoke(app, ["produce", "--gold", str(sample_gold), "--linger-ms", "-1"])
    assert result.exit_code == 2 and "--linger-ms" in result.output


@pytest.mark.integration
def test_messages_arrive_keyed_and_stamped_with_the_produce_time(stack, sample_gold):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from stack.topics import ensure_topics

    topic = f"judgeline.produce-test.{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(update={"kafka": stack.kafka.model_copy(update={
        "topics": stack.kafka.topics.model_copy(update={"traces": topic})})})
    ensure_topics(settings)
    traces = [t for _, t in traces_from_gold(sample_gold)][:5]
    before = time.time()
    result = produce(settings, [(t.trace_id.encode(), t.to_bytes()) for t in traces], rate=200)
    assert (result.sent, result.failed) == (5, 0) and result.seconds >= 4 / 200
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.topics.partitions)])
    got = []
    deadline = time.time() + 30
    while len(got) < 5 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    consumer.close()
    assert sorted(m.key() for m in got) == sorted(t.trace_id.encode() for t in traces)
    assert all(before - 1 <= m.timestamp()[1] / 1000 <= time.time() for m in got)
    assert {parse_json_bytes(Trace, m.value()).trace_id for m in got} == {t.trace_id for t in traces}


@pytest.mark.integration
def test_a_paced_producer_never_sends_a_message_before_its_time(stack, sample_gold):
    """Pacing in ticks (the messages due while the producer slept go out together) and a longer linger keep the
    schedule: message i is stamped no earlier than i / rate after the first."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from stack.topics import ensure_topics

    topic = f"judgeline.produce-pace.{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(update={"kafka": stack.kafka.model_copy(update={
        "topics": stack.kafka.topics.model_copy(update={"traces": topic})})})
    ensure_topics(settings)
    traces = [t for _, t in traces_from_gold(sample_gold)][:60]
    rate = 300.0
    result = produce(settings, [(t.trace_id.encode(), t.to_bytes()) for t in traces], rate=rate, linger_ms=20)
    assert (result.sent, result.failed) == (60, 0) and result.seconds >= 59 / rate
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"g-{uuid.uuid4().hex[:6]}"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.topics.partitions)])
    stamped = {}
    deadline = time.time() + 30
    while len(stamped) < 60 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            stamped[m.key().decode()] = m.timestamp()[1]
    consumer.close()
    order = [t.trace_id for t in traces]
    assert sorted(stamped) == sorted(order)
    first = stamped[order[0]]
    early = [(i, stamped[k] - first) for i, k in enumerate(order) if stamped[k] - first < 1000 * i / rate - 1]
    assert not early, f"sent before their time (index, ms after the first): {early}"
