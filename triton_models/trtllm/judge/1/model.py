"""The GPU judge (BLS): the CPU judge's interface, order-invariant pairwise verdicts from the TensorRT-LLM ensemble.

Contract: inputs KIND, CRITERION, QUESTION, ANSWER_A, ANSWER_B, REFERENCE (TYPE_STRING ``[1]`` per row); outputs
LABEL, SCORE, CONFIDENCE, PROBS (``[3]``, label order of ``verdict_math.LABELS[kind]``, pointwise padded with 0),
SWAP_CONSISTENT, exactly as ``triton_models/judge`` (the CPU judge) returns them. Every row is planned with
``generative.expand_orders``: a pairwise row becomes two requests to the ``ensemble`` model (answers as given, and
swapped), a pointwise row one; all requests of all rows of the batch are sent with ``async_exec`` at once so the
TensorRT-LLM inflight batcher runs them together. Their ``VERDICT_LOGITS`` are combined with
``generative.combine_planned`` (``verdict_math.combine_orders`` then ``verdict_math.verdicts`` at the kind's
temperature), so swapping a row's answers swaps A and B in its result exactly. A request with a bad row (unknown
KIND, empty QUESTION, text that is not UTF-8) gets an INVALID_ARG error naming the row and field, as from the CPU
judge; one whose ensemble call failed gets an error naming the cause; the other requests of the batch are answered.
Imports only the standard library, numpy and the python backend utils, plus ``generative.py``/``verdict_math.py``
copied beside this file by ``infra/trtllm/assemble.py``.
"""

import asyncio
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generative  # noqa: E402  (copied beside this file)

FIELDS = ("KIND", "CRITERION", "QUESTION", "ANSWER_A", "ANSWER_B", "REFERENCE")


def _parameter(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value", default)
    return default if value is None or value.startswith("${") else value


def _texts(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input {name} is missing")
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in tensor.as_numpy().reshape(-1)]


def _items(request):
    """The request's rows as ``JudgeInput``s; bad input raises ``ValueError`` naming the row and field."""
    columns = {name: _texts(request, name) for name in FIELDS}
    n = len(columns["KIND"])
    if any(len(c) != n for c in columns.values()):
        raise ValueError("every input must have the same number of rows")
    items = []
    for i in range(n):
        kind = columns["KIND"][i]
        if kind not in generative.LABELS:
            raise ValueError(f"row {i}: KIND must be pairwise or pointwise, got {kind!r}")
        if not columns["QUESTION"][i].strip():
            raise ValueError(f"row {i}: QUESTION is empty")
        items.append(
            generative.JudgeInput(
                kind=kind,
                criterion=columns["CRITERION"][i],
                question=columns["QUESTION"][i],
                answer_a=columns["ANSWER_A"][i],
                answer_b=columns["ANSWER_B"][i],
                reference=columns["REFERENCE"][i],
            )
        )
    return items


def _bad_input(message):
    """An INVALID_ARG error (permanent for the client, as the CPU judge reports bad input), where supported."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


def _string(name, value):
    return pb_utils.Tensor(name, np.array([[value.encode("utf-8")]], dtype=object))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.ensemble = _parameter(config, "ensemble_model_name", "ensemble")
        self.temperatures = {
            kind: float(_parameter(config, f"temperature_{kind}", "1.0")) for kind in generative.LABELS
        }

    def _order_request(self, item):
        values = (item.kind, item.criterion, item.question, item.answer_a, item.answer_b, item.reference or "")
        return pb_utils.InferenceRequest(
            model_name=self.ensemble,
            requested_output_names=["VERDICT_LOGITS"],
            inputs=[_string(name, value) for name, value in zip(FIELDS, values)],
        )

    async def execute(self, requests):
        planned, awaitables = [], []
        for request in requests:
            try:
                items = _items(request)
            except (ValueError, TypeError, UnicodeDecodeError) as e:
                planned.append(e)
                continue
            plan = generative.expand_orders(items)
            start = len(awaitables)
            awaitables.extend(self._order_request(p.item).async_exec() for p in plan)
            planned.append((items, plan, start))
        answers = await asyncio.gather(*awaitables, return_exceptions=True) if awaitables else []

        responses = []
        for entry in planned:
            if isinstance(entry, Exception):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_bad_input(str(entry))))
                continue
            items, plan, start = entry
            try:
                logits = []
                for answer in answers[start : start + len(plan)]:
                    if isinstance(answer, Exception):
                        raise ValueError(f"{self.ensemble} failed: {answer}")
                    if answer.has_error():
                        raise ValueError(f"{self.ensemble} failed: {answer.error().message()}")
                    logits.append(pb_utils.get_output_tensor_by_name(answer, "VERDICT_LOGITS").as_numpy().reshape(-1))
                verdicts = generative.combine_planned(items, plan, logits, self.temperatures)
            except ValueError as e:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e))))
                continue
            outputs = [
                pb_utils.Tensor("LABEL", np.array([[v["label"].encode("utf-8")] for v in verdicts], dtype=object)),
                pb_utils.Tensor("SCORE", np.array([[v["score"]] for v in verdicts], dtype=np.float32)),
                pb_utils.Tensor("CONFIDENCE", np.array([[v["confidence"]] for v in verdicts], dtype=np.float32)),
                pb_utils.Tensor("PROBS", np.array([v["probs"] for v in verdicts], dtype=np.float32)),
                pb_utils.Tensor(
                    "SWAP_CONSISTENT", np.array([[v["swap_consistent"]] for v in verdicts], dtype=np.bool_)
                ),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
