"""Permanent judge errors are bounded (issue 12, point 2), on the real Triton server.

``tests/triton_test_models/hostile_judge`` has the judge's inputs and outputs and misbehaves by question: it raises
for a request holding a ``RAISE`` row, answers one row short for ``SHORT`` and PROBS two columns wide for ``SHAPE``.
The client refuses a wrong-sized answer (``JudgeAnswerMismatch``, naming output and shapes) instead of zipping
past it; the inline stage judges a failing batch trace by trace, dead-letters (stage ``judge``) the trace that keeps
failing while the rest of its batch is judged, and the batch goes on with one verdict for every other trace.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from judge_engine.clients.triton_client import JudgeAnswerMismatch, TritonJudge
from judge_engine.failures import JitteredWait, classify
from judge_engine.online.inline import JudgeUnavailable, judge_batch
from judge_engine.online.pipeline import Incoming
from schemas.trace import Trace
from stack import triton

pytestmark = pytest.mark.integration

MODEL = "hostile_judge"


@pytest.fixture(scope="module")
def hostile(stack):
    triton.load_model(stack, MODEL)
    return stack.model_copy(update={
        "triton": stack.triton.model_copy(update={"model_name": MODEL, "max_retries": 1, "timeout_s": 10}),
        "routing": stack.routing.model_copy(update={"threshold": 0.0, "calibration_sample_rate": 0.0})})


def _trace(i: int, question: str = "Is the sky blue?") -> Trace:
    return Trace(trace_id=f"iso-{i}", kind="pointwise", question=question, answer="Yes.")


def _messages(traces: list[Trace]) -> list[Incoming]:
    return [Incoming(value=t.to_bytes(), key=t.trace_id.encode(), topic="traces", partition=0, offset=i)
            for i, t in enumerate(traces)]


def _run(settings, coro_fn):
    async def go():
        async with TritonJudge(settings.triton, backoff=JitteredWait(initial_s=0.01, max_s=0.05)) as judge:
            return await coro_fn(judge)

    return asyncio.run(go())


@pytest.mark.parametrize("word, output", [("SHORT", "LABEL"), ("SHAPE", "PROBS")])
def test_a_wrong_sized_answer_is_refused_naming_the_output_not_zipped(hostile, word, output):
    traces = [_trace(0), _trace(1, f"{word} please"), _trace(2)]
    with pytest.raises(JudgeAnswerMismatch, match=f"{output} of shape") as e:
        _run(hostile, lambda judge: judge.judge(traces))
    assert classify(e.value) == "permanent" and "for 3 items" in str(e.value)


@pytest.mark.parametrize("word", ["RAISE", "SHORT", "SHAPE"])
def test_the_failing_trace_becomes_a_judge_dead_letter_and_the_batch_goes_on(hostile, word):
    traces = [_trace(i, f"{word} this one" if i == 3 else f"Question {i}?") for i in range(8)]
    outcome = _run(hostile, lambda judge: judge_batch(_messages(traces), judge, hostile))
    assert sorted(v.trace_id for v in outcome.verdicts) == sorted(t.trace_id for t in traces if t.trace_id != "iso-3")
    assert all(v.judge_name == MODEL and v.label == "pass" for v in outcome.verdicts)
    (letter,) = outcome.dead_letters
    assert (letter.stage, letter.offset) == ("judge", 3)
    assert json.loads(letter.raw)["trace_id"] == "iso-3"
    expected = "hostile_judge: this input always fails" if word == "RAISE" else "shape"
    assert expected in letter.error, letter.error


def test_a_batch_whose_every_trace_fails_is_held_not_dead_lettered(hostile):
    traces = [_trace(i, "RAISE all") for i in range(3)]
    with pytest.raises(JudgeUnavailable):
        _run(hostile, lambda judge: judge_batch(_messages(traces), judge, hostile))
