"""The trace identity is declared once (``schemas.trace_row.TraceRow``): every row about a trace takes it first, a
trace's ``row_keys`` are exactly its fields, and a row read back in another field order is the same row."""

import json
from datetime import datetime, timezone

import pytest

from schemas.base import parse_json_bytes
from schemas.shadow import ShadowVerdict
from schemas.trace import Trace
from schemas.trace_row import TRACE_ROW_FIELDS, TraceRow
from schemas.verdict import Disagreement, FrontierVerdict, Verdict
from streams.sink import COLUMNS

ROW_MODELS = {"verdicts": Verdict, "frontier_verdicts": FrontierVerdict, "disagreements": Disagreement,
              "shadow_verdicts": ShadowVerdict}
TRACE = Trace(trace_id="t-7", tenant="acme", app="chat", kind="pairwise", criterion="helpfulness", question="q",
              answer_a="a", answer_b="b", timestamp=datetime(2026, 11, 2, 3, 4, 5, tzinfo=timezone.utc))
OWN_FIELDS = {
    Verdict: dict(label="B", score=0.3, confidence=0.7, judge_name="judge", judge_version="4", latency_ms=2.0),
    FrontierVerdict: dict(judge_name="gpt-4", label="A", request_reason="low_confidence"),
    Disagreement: dict(inline_label="B", inline_confidence=0.7, inline_judge_version="4", frontier_label="A",
                       frontier_judge="gpt-4", request_reason="low_confidence"),
    ShadowVerdict: dict(label="tie", score=0.5, confidence=0.4, judge_name="judge", judge_version="5",
                        latency_ms=3.0),
}


def test_the_identity_fields_are_named_once_in_order():
    assert TRACE_ROW_FIELDS == ("trace_id", "tenant", "app", "kind", "criterion", "trace_time")
    assert TraceRow.model_fields["tenant"].default == TraceRow.model_fields["app"].default == "default"


@pytest.mark.parametrize("table", ROW_MODELS)
def test_every_row_about_a_trace_leads_with_the_identity(table):
    model = ROW_MODELS[table]
    assert issubclass(model, TraceRow)
    assert tuple(model.model_fields)[1:1 + len(TRACE_ROW_FIELDS)] == TRACE_ROW_FIELDS
    assert COLUMNS[table][:len(TRACE_ROW_FIELDS)] == TRACE_ROW_FIELDS  # the sink's columns follow the model


@pytest.mark.parametrize("model", OWN_FIELDS)
def test_a_trace_row_keys_build_each_row_and_come_back_from_it(model):
    row = model(**TRACE.row_keys(), **OWN_FIELDS[model])
    assert row.trace_time == TRACE.timestamp and row.tenant == "acme" and row.criterion == "helpfulness"
    assert row.row_keys() == TRACE.row_keys()
    # the wire is keyed by name: the same fields in reverse order parse into the same row
    reordered = dict(reversed(list(json.loads(row.to_bytes()).items())))
    assert parse_json_bytes(model, json.dumps(reordered).encode()) == row


def test_row_keys_are_exactly_the_identity():
    assert tuple(TRACE.row_keys()) == TRACE_ROW_FIELDS
    assert TRACE.row_keys()["trace_time"] == TRACE.timestamp
