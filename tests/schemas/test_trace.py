"""Trace: good and bad input, errors that name the field, OpenTelemetry GenAI spans, gold items."""

import json

import pytest

from schemas.base import (
    MAX_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    InvalidMessage,
    parse_json_bytes,
)
from schemas.gold import GoldLabel
from schemas.trace import Trace

POINTWISE = {"trace_id": "t-1", "kind": "pointwise", "question": "Is water wet?", "answer": "Yes."}
PAIRWISE = {"trace_id": "t-2", "kind": "pairwise", "question": "Say hi", "answer_a": "hi", "answer_b": "hello"}


def parse(data) -> Trace:
    return parse_json_bytes(Trace, json.dumps(data).encode())


def reason(data) -> str:
    with pytest.raises(InvalidMessage) as e:
        parse(data) if isinstance(data, dict) else parse_json_bytes(Trace, data)
    return e.value.reason


def test_valid_pointwise_and_pairwise_round_trip():
    for data in (POINTWISE, PAIRWISE):
        trace = parse(data)
        assert parse_json_bytes(Trace, trace.to_bytes()) == trace
    assert parse(PAIRWISE).criterion == "overall"
    assert parse(POINTWISE).timestamp.tzinfo is not None


def test_naive_timestamp_is_utc_and_offsets_are_converted():
    t = parse({**POINTWISE, "timestamp": "2026-01-02T03:04:05+02:00"})
    assert (t.timestamp.hour, t.timestamp.utcoffset().total_seconds()) == (1, 0)


@pytest.mark.parametrize(
    "data, field",
    [
        ({k: v for k, v in POINTWISE.items() if k != "trace_id"}, "trace_id"),
        ({**POINTWISE, "kind": "listwise"}, "kind"),
        ({**POINTWISE, "question": ""}, "question"),
        ({**POINTWISE, "answer": None}, "answer"),
        ({**PAIRWISE, "answer_b": None}, "answer_b"),
        ({**POINTWISE, "answer_a": "x"}, "answer_a"),
        ({**POINTWISE, "surprise": 1}, "surprise"),
        ({**POINTWISE, "trace_id": "has space"}, "trace_id"),
        ({**POINTWISE, "answer": "x" * (MAX_TEXT_CHARS + 1)}, "answer"),
        ({**POINTWISE, "metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}, "metadata"),
        ({**POINTWISE, "metadata": {"blob": "x" * 20_000}}, "metadata"),
        ({**POINTWISE, "timestamp": "yesterday"}, "timestamp"),
    ],
)
def test_bad_input_names_the_field(data, field):
    assert field in reason(data)


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{" * 100_000, "not JSON"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "over the limit"),
    ],
)
def test_malformed_bytes_are_rejected_with_a_reason(raw, words):
    assert words in reason(raw)


def test_from_otel_span_otlp_json():
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "startTimeUnixNano": "1700000000000000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "judgeline.criterion", "value": {"stringValue": "groundedness"}},
            {
                "key": "gen_ai.input.messages",
                "value": {
                    "stringValue": json.dumps(
                        [
                            {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                            {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]},
                            {"role": "tool", "parts": [{"type": "text", "content": "Paris is the capital."}]},
                        ]
                    )
                },
            },
            {
                "key": "gen_ai.output.messages",
                "value": {"stringValue": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Paris"}]}])},
            },
        ],
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "travel-bot"}}]},
    }
    t = Trace.from_otel_span(span)
    assert (t.trace_id, t.span_id, t.app, t.model, t.kind) == (
        "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "travel-bot", "gpt-4o-mini", "pointwise"
    )
    assert (t.question, t.answer, t.context, t.criterion) == ("Capital of France?", "Paris", "Paris is the capital.", "groundedness")
    assert t.timestamp.year == 2023 and t.metadata == {"gen_ai.operation.name": "chat"}


def test_from_otel_span_flat_pairwise():
    t = Trace.from_otel_span(
        {
            "trace_id": "abc",
            "attributes": {
                "gen_ai.input.messages": [{"role": "user", "content": "q?"}],
                "gen_ai.output.messages": [{"role": "assistant", "content": "first"}],
                "judgeline.answer_b": "second",
            },
        }
    )
    assert (t.kind, t.answer_a, t.answer_b) == ("pairwise", "first", "second")


@pytest.mark.parametrize(
    "span, field",
    [
        ({"attributes": {}}, "traceId"),
        ({"traceId": "a", "attributes": {"gen_ai.input.messages": "{oops"}}, "gen_ai.input.messages"),
        ({"traceId": "a", "attributes": {"gen_ai.input.messages": []}}, "gen_ai.input.messages"),
        (
            {"traceId": "a", "attributes": {"gen_ai.input.messages": [{"role": "user", "content": "q"}]}},
            "gen_ai.output.messages",
        ),
    ],
)
def test_bad_spans_name_the_attribute(span, field):
    with pytest.raises(InvalidMessage) as e:
        Trace.from_otel_span(span)
    assert field in e.value.reason


def test_from_gold_item():
    item = GoldLabel(id="g1", source="PandaLM", kind="pairwise", question="q", answer_a="a", answer_b="b", human_label="A")
    t = Trace.from_gold(item)
    assert (t.trace_id, t.kind, t.answer_a, t.metadata["gold_source"]) == ("g1", "pairwise", "a", "PandaLM")
