"""Verdict, FrontierRequest, FrontierVerdict, Disagreement, DeadLetter and GoldLabel rules."""

import base64
import json
from datetime import datetime, timezone

import pytest

from schemas.base import InvalidMessage, parse_json_bytes, validate
from schemas.dead_letter import DeadLetter
from schemas.gold import GoldLabel, read_gold_file
from schemas.trace import Trace
from schemas.verdict import Disagreement, FrontierRequest, FrontierVerdict, Verdict

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
VERDICT = dict(
    trace_id="t1", kind="pairwise", criterion="overall", label="A", score=0.8, confidence=0.8,
    judge_name="minilm-judge", judge_version="3", latency_ms=12.5, trace_time=NOW,
)


def reason(model, data) -> str:
    with pytest.raises(InvalidMessage) as e:
        validate(model, data)
    return e.value.reason


def test_verdict_label_must_fit_kind():
    assert validate(Verdict, VERDICT).routed is False
    assert "pass/fail" in reason(Verdict, {**VERDICT, "kind": "pointwise"})
    assert "confidence" in reason(Verdict, {**VERDICT, "confidence": 1.5})
    assert "route_reason" in reason(Verdict, {**VERDICT, "route_reason": "because"})
    assert validate(Verdict, {**VERDICT, "route_reason": "low_confidence"}).routed


def test_frontier_request_needs_matching_trace():
    trace = Trace(trace_id="t1", kind="pairwise", question="q", answer_a="a", answer_b="b")
    request = FrontierRequest(trace=trace, reason="calibration_sample", inline_verdict=Verdict(**VERDICT))
    assert parse_json_bytes(FrontierRequest, request.to_bytes()) == request
    other = Verdict(**{**VERDICT, "trace_id": "t2"})
    assert "inline_verdict.trace_id" in reason(FrontierRequest, {"trace": trace, "reason": "forced", "inline_verdict": other})


def test_frontier_verdict_status_and_label_agree():
    base = dict(trace_id="t1", kind="pointwise", criterion="hallucination", judge_name="gpt-4",
                request_reason="low_confidence", trace_time=NOW)
    assert validate(FrontierVerdict, {**base, "label": "fail"}).status == "ok"
    assert "label is required" in reason(FrontierVerdict, base)
    assert "budget_exhausted" in reason(FrontierVerdict, {**base, "status": "budget_exhausted", "label": "pass"})
    assert validate(FrontierVerdict, {**base, "status": "budget_exhausted", "error": "spent 10.0 USD"}).label is None
    assert "label_swapped" in reason(FrontierVerdict, {**base, "label": "pass", "label_swapped": "A"})


def test_disagreement_requires_different_labels():
    base = dict(trace_id="t1", kind="pairwise", criterion="overall", inline_label="A", inline_confidence=0.6,
                inline_judge_version="3", frontier_label="B", frontier_judge="gpt-4",
                request_reason="low_confidence", trace_time=NOW)
    assert validate(Disagreement, base).frontier_label == "B"
    assert "inline_label != frontier_label" in reason(Disagreement, {**base, "frontier_label": "A"})


def test_dead_letter_keeps_raw_bytes_through_json():
    raw = b"\xff\x00 not utf-8"
    dl = DeadLetter(raw=raw, error="(message): not valid UTF-8", topic="judgeline.traces", partition=0, offset=7,
                    message_time=NOW)
    data = json.loads(dl.to_bytes())
    assert base64.b64decode(data["raw"]) == raw
    assert parse_json_bytes(DeadLetter, dl.to_bytes()).raw == raw
    assert len(DeadLetter(raw=b"", error="x" * 10_000, topic="t", partition=0, offset=0, message_time=NOW).error) == 4096


def test_gold_label_rules():
    item = dict(id="1", source="s", kind="pointwise", criterion="hallucination", question="q", answer="a",
                human_label="pass", teacher={"gpt-4": "fail"})
    assert validate(GoldLabel, item).teacher == {"gpt-4": "fail"}
    assert "teacher.gpt-4" in reason(GoldLabel, {**item, "teacher": {"gpt-4": "A"}})
    assert "human_label" in reason(GoldLabel, {**item, "human_label": "tie"})
    assert "answer_a" in reason(GoldLabel, {**item, "kind": "pairwise", "human_label": "A", "teacher": {}})


def test_read_gold_file_reports_each_bad_line(tmp_path):
    path = tmp_path / "gold.jsonl"
    good = {"id": "1", "source": "s", "kind": "pairwise", "question": "q", "answer_a": "a", "answer_b": "b",
            "human_label": "tie"}
    path.write_text("\n".join([json.dumps(good), "{broken", "", json.dumps({**good, "human_label": "maybe"})]) + "\n")
    results = list(read_gold_file(path))
    assert [n for n, _ in results] == [1, 2, 4]
    assert isinstance(results[0][1], GoldLabel)
    assert "not JSON" in results[1][1].reason and "human_label" in results[2][1].reason
