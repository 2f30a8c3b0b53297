"""Schema versions (schemas.versioning): every message carries one, and the one rule of what a worker accepts.

- same major, minor <= ours (or no version: 1.0): strict as before, an unknown field is an error naming it;
- same major, a newer minor: unknown fields kept under metadata["_unknown"] (dropped by a model without metadata),
  the message accepted; what this release writes carries its own version;
- another major, or a version that does not parse: rejected, the reason naming schema_version and the fix.
Also the routing policy's JSON and the stages (a newer trace is judged and counted, a newer major dead-lettered).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from judge_engine.online.inline import ConstantJudge, judge_batch
from judge_engine.online.pipeline import Incoming
from judge_engine.online.policy import RoutingPolicy
from schemas import versioning
from schemas.base import MAX_METADATA_BYTES, InvalidMessage, Message, parse_json_bytes
from schemas.jsonschema import MESSAGE_TYPES
from schemas.settings import Settings
from schemas.trace import Trace
from schemas.verdict import FrontierRequest, Verdict
from streams.sink import TABLE_MODELS

T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
OURS = versioning.SCHEMA_VERSION
MAJOR, MINOR = versioning.parse_version(OURS)
NEXT_MINOR = f"{MAJOR}.{MINOR + 1}"
NEXT_MAJOR = f"{MAJOR + 1}.0"


def trace_json(**extra) -> dict:
    t = Trace(trace_id="t1", kind="pointwise", question="q?", answer="a", timestamp=T0)
    return {**json.loads(t.to_bytes()), **extra}


def reason(model, data: dict) -> str:
    with pytest.raises(InvalidMessage) as e:
        parse_json_bytes(model, json.dumps(data))
    return e.value.reason


def test_every_message_type_carries_the_version_and_writes_ours():
    for model in {*MESSAGE_TYPES, *TABLE_MODELS.values()}:
        assert issubclass(model, Message) and "schema_version" in model.model_fields, model.__name__
    t = Trace(trace_id="t1", kind="pointwise", question="q?", answer="a")
    assert t.schema_version == OURS and json.loads(t.to_bytes())["schema_version"] == OURS
    request = FrontierRequest(trace=t, reason="forced")
    written = json.loads(request.to_bytes())
    assert written["schema_version"] == written["trace"]["schema_version"] == OURS
    assert json.loads(RoutingPolicy.cold_start(1).to_json())["schema_version"] == OURS


def test_a_message_without_a_version_is_1_0_and_strict():
    data = trace_json()
    del data["schema_version"]
    assert parse_json_bytes(Trace, json.dumps(data)).trace_id == "t1"
    assert reason(Trace, {**data, "colour": 1}) == "colour: unknown field; remove it or put it under metadata"


@pytest.mark.parametrize("version", [OURS, f"{MAJOR}.0"])
def test_our_minor_or_an_older_one_is_strict(version):
    assert parse_json_bytes(Trace, json.dumps(trace_json(schema_version=version))).schema_version == version
    assert reason(Trace, trace_json(schema_version=version, session_id="s1")).startswith("session_id: unknown field")


def test_a_newer_minor_keeps_unknown_fields_under_metadata_and_writes_ours():
    data = trace_json(schema_version=NEXT_MINOR, session_id="s1", priority={"level": 2},
                      metadata={"team": "x", "_unknown": {"earlier": True}})
    t = parse_json_bytes(Trace, json.dumps(data))
    assert t.schema_version == NEXT_MINOR and versioning.is_newer(t.schema_version)
    assert t.metadata == {"team": "x", "_unknown": {"earlier": True, "session_id": "s1", "priority": {"level": 2}}}
    written = json.loads(t.to_bytes())
    assert written["schema_version"] == OURS and "session_id" not in written
    again = parse_json_bytes(Trace, t.to_bytes())  # what an older worker re-writes is a strict message of its own
    assert again.metadata == t.metadata and not versioning.is_newer(again.schema_version)


def test_a_newer_minor_of_a_model_without_metadata_drops_its_unknown_fields():
    v = Verdict(trace_id="t1", kind="pointwise", criterion="overall", label="pass", score=0.9, confidence=0.9,
                judge_name="j", judge_version="1", latency_ms=1.0, trace_time=T0)
    data = {**json.loads(v.to_bytes()), "schema_version": NEXT_MINOR, "shadow_of": "2"}
    assert parse_json_bytes(Verdict, json.dumps(data)).model_dump(exclude={"schema_version"}) == \
        v.model_dump(exclude={"schema_version"})
    assert reason(Verdict, {**data, "schema_version": OURS}).startswith("shadow_of: unknown field")


def test_a_newer_minor_still_validates_the_fields_it_knows():
    assert reason(Trace, trace_json(schema_version=NEXT_MINOR, session_id="s", kind="sideways")).startswith("kind:")


@pytest.mark.parametrize("version, words", [
    (NEXT_MAJOR, ["newer than this worker", "upgrade the worker"]),
    (f"{MAJOR + 7}.3", ["newer than this worker", "upgrade the worker"]),
    (f"{MAJOR - 1}.9", ["no longer reads", "re-produce the message"]),
])
def test_another_major_is_rejected_naming_the_field_and_the_fix(version, words):
    why = reason(Trace, trace_json(schema_version=version))
    assert why.startswith("schema_version: ") and all(w in why for w in words), why
    assert versioning.DOCS in why


@given(st.one_of(
    st.text(max_size=20).filter(lambda s: versioning._VERSION.match(s) is None),
    st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
))
@settings(max_examples=200, deadline=None)
def test_a_version_that_does_not_parse_is_rejected_naming_the_field(version):
    why = reason(Trace, trace_json(schema_version=version))
    assert why.startswith("schema_version: ") and ("MAJOR.MINOR" in why or "must be a string" in why), why


@given(minor=st.integers(MINOR + 1, 9999),
       extra=st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True).filter(
           lambda k: k not in Trace.model_fields), st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                                                            st.text(max_size=30), st.lists(st.integers(), max_size=3)),
           max_size=5))
@settings(max_examples=200, deadline=None)
def test_any_newer_minor_with_any_optional_fields_is_accepted_and_kept(minor, extra):
    t = parse_json_bytes(Trace, json.dumps(trace_json(schema_version=f"{MAJOR}.{minor}", **extra)))
    assert t.metadata.get("_unknown", {}) == extra
    assert parse_json_bytes(Trace, t.to_bytes()).metadata == t.metadata


@given(ours=st.tuples(st.integers(0, 50), st.integers(0, 50)), theirs=st.tuples(st.integers(0, 50), st.integers(0, 50)))
@settings(max_examples=300, deadline=None)
def test_the_rule_for_any_pair_of_versions(ours, theirs):
    """Another major is refused, a newer minor kept under metadata, the rest strict: whatever our version is."""
    data = {"schema_version": "%d.%d" % theirs, "trace_id": "t", "new_field": 1, "metadata": {}}
    with mock.patch.object(versioning, "SCHEMA_VERSION", "%d.%d" % ours):
        if theirs[0] != ours[0]:
            with pytest.raises(versioning.VersionError, match="schema major"):
                versioning.admit(data, Trace.model_fields, "metadata")
            return
        admitted = versioning.admit(data, Trace.model_fields, "metadata")
    if theirs[1] > ours[1]:
        assert "new_field" not in admitted and admitted["metadata"] == {"_unknown": {"new_field": 1}}
    else:
        assert admitted == data  # strict: the model reports new_field


def test_absent_means_1_0_when_received_and_ours_when_built_here():
    with mock.patch.object(versioning, "SCHEMA_VERSION", NEXT_MAJOR):
        built = Trace(trace_id="t1", kind="pointwise", question="q?", answer="a")
        assert built.schema_version == NEXT_MAJOR
        data = json.loads(built.to_bytes())
        assert data["schema_version"] == NEXT_MAJOR
        del data["schema_version"]  # an old producer's trace reaching a worker of the next major
        assert reason(Trace, data).startswith(f"schema_version: \"{versioning.ABSENT_MEANS}\" is of schema major")


def test_kept_fields_count_toward_the_metadata_limit():
    why = reason(Trace, trace_json(schema_version=NEXT_MINOR, blob="x" * (MAX_METADATA_BYTES + 10)))
    assert why.startswith("metadata: ") and "send less metadata" in why


def test_a_reserved_unknown_key_that_is_not_an_object_is_named():
    why = reason(Trace, trace_json(schema_version=NEXT_MINOR, session_id="s", metadata={"_unknown": 3}))
    assert why.startswith("metadata._unknown: reserved for the fields of a newer schema version"), why


def test_nested_messages_follow_the_rule_each_by_its_own_version():
    t = Trace(trace_id="t1", kind="pointwise", question="q?", answer="a", timestamp=T0)
    data = json.loads(FrontierRequest(trace=t, reason="forced").to_bytes())
    data["trace"] |= {"schema_version": NEXT_MINOR, "session_id": "s1"}
    request = parse_json_bytes(FrontierRequest, json.dumps(data), max_bytes=1024 * 1024)
    assert request.trace.metadata == {"_unknown": {"session_id": "s1"}}
    data["trace"]["schema_version"] = NEXT_MAJOR
    assert reason(FrontierRequest, data).startswith("trace.schema_version: ")
    data["trace"]["schema_version"] = OURS
    assert reason(FrontierRequest, data).startswith("trace.session_id: unknown field")


class NewerTrace(Trace):
    """A trace of the next minor release: it knows one more optional field."""

    session_id: str | None = None


def test_a_newer_worker_restores_what_an_older_one_kept():
    kept = parse_json_bytes(Trace, json.dumps(trace_json(schema_version=NEXT_MINOR, session_id="s1", other=1)))
    restored = parse_json_bytes(NewerTrace, kept.to_bytes())
    assert restored.session_id == "s1" and restored.metadata == {"_unknown": {"other": 1}}
    given_twice = {**json.loads(kept.to_bytes()), "session_id": "s2"}  # the field itself wins over a kept copy
    assert parse_json_bytes(NewerTrace, json.dumps(given_twice)).session_id == "s2"


def test_the_routing_policy_follows_the_same_rule():
    body = json.loads(RoutingPolicy.cold_start(3).to_json())
    newer = {**body, "schema_version": NEXT_MINOR, "owner": "ops",
             "rules": [{**r, "budget": 1} for r in body["rules"]]}
    assert RoutingPolicy.from_json(json.dumps(newer)) == RoutingPolicy.cold_start(3)
    with pytest.raises(ValueError, match=r"policy\.owner is not a policy field"):
        RoutingPolicy.from_json(json.dumps({**newer, "schema_version": OURS}))
    with pytest.raises(ValueError, match=r"policy\.schema_version: .*upgrade the worker"):
        RoutingPolicy.from_json(json.dumps({**body, "schema_version": NEXT_MAJOR}))
    del body["schema_version"]  # a policy published before the field
    assert RoutingPolicy.from_json(json.dumps(body)) == RoutingPolicy.cold_start(3)


def test_the_inline_stage_judges_a_newer_trace_and_dead_letters_a_newer_major():
    values = [json.dumps(trace_json(trace_id=f"t{i}", schema_version=v, session_id="s")).encode()
              for i, v in enumerate([NEXT_MINOR, NEXT_MINOR, NEXT_MAJOR])]
    messages = [Incoming(value=v, key=None, topic="judgeline.traces", partition=0, offset=i, timestamp=T0)
                for i, v in enumerate(values)]
    outcome = asyncio.run(judge_batch(messages, ConstantJudge(), Settings()))
    assert [v.trace_id for v in outcome.verdicts] == ["t0", "t1"] and outcome.rolled_forward == 2
    assert [t.metadata for t in outcome.traces] == [{"_unknown": {"session_id": "s"}}] * 2
    [letter] = outcome.dead_letters
    assert (letter.offset, letter.stage) == (2, "parse") and letter.error.startswith("schema_version: ")
    assert letter.raw == values[2]


class EchoFrontier:
    """Answers every request with the frontier label ``pass``/``A`` (only the stage's bookkeeping is under test)."""

    def __init__(self):
        self.seen: list[FrontierRequest] = []

    async def judge_many(self, requests):
        from schemas.verdict import FrontierVerdict

        self.seen.extend(requests)
        return [FrontierVerdict(trace_id=r.trace.trace_id, kind=r.trace.kind, criterion=r.trace.criterion,
                                judge_name="gpt-4", label="pass", request_reason=r.reason,
                                trace_time=r.trace.timestamp) for r in requests]


def test_the_frontier_stage_judges_a_newer_request_and_dead_letters_a_newer_major():
    from judge_engine.online.frontier_stage import frontier_batch

    t = Trace(trace_id="t1", kind="pointwise", question="q?", answer="a", timestamp=T0)
    newer = json.loads(FrontierRequest(trace=t, reason="judge_unavailable").to_bytes())
    newer |= {"schema_version": NEXT_MINOR, "priority": 1}
    newer["trace"] |= {"schema_version": NEXT_MINOR, "session_id": "s1"}
    other = {**newer, "schema_version": NEXT_MAJOR}
    messages = [Incoming(value=json.dumps(v).encode(), key=None, topic="judgeline.frontier-requests", partition=0,
                         offset=i, timestamp=T0) for i, v in enumerate([newer, other])]
    frontier = EchoFrontier()
    outcome = asyncio.run(frontier_batch(messages, frontier))
    assert outcome.rolled_forward == 1 and [v.trace_id for v in outcome.verdicts] == ["t1"]
    assert frontier.seen[0].trace.metadata == {"_unknown": {"session_id": "s1"}}
    [letter] = outcome.dead_letters
    assert letter.offset == 1 and letter.error.startswith("schema_version: ")
