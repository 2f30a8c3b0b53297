"""Property-based bad input for trace validation: arbitrary bytes, arbitrary JSON and mutated valid traces each give
either a valid Trace or an InvalidMessage whose reason names the field, never any other exception."""

import json
import re

from hostile_corpus import corpus
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.base import InvalidMessage, parse_json_bytes
from schemas.trace import Trace

FIELDS = tuple(Trace.model_fields)
REASON_ITEM = re.compile(r"^(\(message\)|[^:;]+): \S")  # every '; '-joined item starts with 'field: '

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=25)


def _outcome(raw: bytes) -> Trace | InvalidMessage:
    try:
        return parse_json_bytes(Trace, raw)
    except InvalidMessage as e:
        assert e.reason and REASON_ITEM.match(e.reason), e.reason
        return e


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_a_trace_or_an_invalid_message(raw):
    _outcome(raw)


@hsettings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_a_trace_or_an_invalid_message(value):
    _outcome(json.dumps(value).encode())


def _valid(kind: str) -> dict:
    if kind == "pairwise":
        return {"trace_id": "t-1", "kind": kind, "question": "q?", "answer_a": "a", "answer_b": "b"}
    return {"trace_id": "t-1", "kind": kind, "question": "q?", "answer": "a", "metadata": {"k": [1, {"x": 2}]}}


ANSWER_FIELDS = {"kind", "answer", "answer_a", "answer_b"}  # a change here can be reported as a kind/answer mismatch


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["pairwise", "pointwise"]), field=st.sampled_from(FIELDS + ("colour", "traceId")),
       action=st.sampled_from(["delete", "set"]), value=json_values)
def test_a_mutated_valid_trace_is_rejected_naming_the_mutated_field(kind, field, action, value):
    data = _valid(kind)
    assume(action == "set" or field in data)
    if action == "delete":
        del data[field]
    else:
        data[field] = value
    result = _outcome(json.dumps(data).encode())
    if isinstance(result, InvalidMessage):
        named = field in result.reason or (field in ANSWER_FIELDS and any(f in result.reason for f in ANSWER_FIELDS))
        assert named, (field, result.reason)
    elif action == "set" and field != "timestamp":  # accepted: the value went through as sent, not coerced
        assert getattr(result, field) == value, (field, value)
    elif action == "delete":
        assert getattr(result, field) == Trace.model_fields[field].get_default(call_default_factory=True) \
            or field in ("timestamp",)


@hsettings(max_examples=150, deadline=None)
@given(st.text(max_size=60), st.integers(min_value=0, max_value=200))
def test_any_text_in_any_field_position_never_escapes_as_another_exception(text, cut):
    raw = json.dumps(_valid("pointwise") | {"question": text}).encode()
    _outcome(raw)
    _outcome(raw[:cut])  # truncated anywhere
    _outcome(raw.replace(b'"', b"", 1))


def test_every_case_of_the_corpus_gets_its_documented_outcome():
    for case in corpus("unit-"):
        if case.raw is None:
            continue  # a tombstone never reaches the parser (the inline stage turns it into a dead letter)
        result = _outcome(case.raw)
        if case.expect == "verdict":
            assert isinstance(result, Trace), (case.name, result)
        else:
            assert isinstance(result, InvalidMessage), case.name
            expected = [r for r in case.reason if "raw kept" not in r]  # added by the dead letter, not the parser
            assert all(r in result.reason for r in expected), (case.name, result.reason)
