"""Triton python-backend model of the inline judge (the source; `judgeline export` copies it into each version).

Contract:
- A version directory holds this file as ``model.py`` beside ``student.py``, ``verdict_math.py`` (copied from
  ``judge_engine/``), ``heads.pt`` and ``student.json``; it imports nothing from judgeline, so the same directory
  runs in the embedded CPU Triton and in the NVIDIA Triton image on a GPU (the instance kind picks the device).
  The version's ``student.json`` picks the encoder's runtime (torch, or ONNX Runtime with ``encoder.onnx``); the
  ``torch_threads`` parameter sets the threads of either (on CPU with ONNX Runtime, torch then runs only the small
  heads, on one thread: ``thread_pools``, copied beside ``student.py``); ``ort_spinning`` ("1"/"0") whether ONNX
  Runtime's threads busy-wait within a run (``student.onnx_session``).
- Each request row is one item: KIND, CRITERION, QUESTION, ANSWER_A (the answer for pointwise), ANSWER_B (empty
  for pointwise), REFERENCE (empty when none), all UTF-8 strings. Rows of every request in one execution (dynamic
  batching) are judged together; the response rows keep the request's order.
- Outputs per row: LABEL, SCORE (P(A) or P(pass)), CONFIDENCE (calibrated probability of LABEL), PROBS (A/B/tie or
  pass/fail/0), SWAP_CONSISTENT. The model version is the version directory, reported by Triton in every response.
- An empty answer is judged like any other (a model that said nothing). A request with an unknown kind, an
  empty question, text that is not UTF-8, or a kind this version
  was not trained for gets an error response naming the row and the field (a permanent, bad-input error for
  the client); the other requests of the same execution are answered normally.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

INPUTS = ("KIND", "CRITERION", "QUESTION", "ANSWER_A", "ANSWER_B", "REFERENCE")


def _bad_input(message):
    """An INVALID_ARG error (gRPC INVALID_ARGUMENT: permanent for the client), where this backend supports codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


class TritonPythonModel:
    def initialize(self, args):
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        sys.path.insert(0, version_dir)
        import torch

        import student

        params = json.loads(args["model_config"]).get("parameters", {})
        threads = int(params.get("torch_threads", {}).get("string_value", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        device = "cpu"
        if args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args['model_instance_device_id']}"
        # torch_threads also sizes the ONNX Runtime session of a version exported with --runtime onnx, whose threads
        # busy-wait within a run when ort_spinning is "1" (lower latency at batch 1, CPU burnt while a run waits)
        spinning = params.get("ort_spinning", {}).get("string_value", "0") == "1"
        self.judge = student.Judge(version_dir, device=device, threads=threads if threads > 0 else None,
                                   spinning=spinning)
        self.trained_kinds = set(self.judge.meta.get("trained_kinds", ["pairwise", "pointwise"]))

    def _rows(self, request):
        columns = {}
        for name in INPUTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name} is missing")
            columns[name] = [v.decode("utf-8") for v in tensor.as_numpy().reshape(-1)]
        rows = []
        for i in range(len(columns["KIND"])):
            kind = columns["KIND"][i]
            if kind not in ("pairwise", "pointwise"):
                raise ValueError(f"row {i}: KIND must be pairwise or pointwise, got {kind!r}")
            if kind not in self.trained_kinds:
                raise ValueError(f"row {i}: this judge version was not trained for {kind} items")
            if not columns["QUESTION"][i].strip():
                raise ValueError(f"row {i}: QUESTION is empty")
            item = {
                "kind": kind,
                "criterion": columns["CRITERION"][i] or "overall",
                "question": columns["QUESTION"][i],
                "reference": columns["REFERENCE"][i] or None,
            }
            if kind == "pairwise":
                item["answer_a"], item["answer_b"] = columns["ANSWER_A"][i], columns["ANSWER_B"][i]
            else:
                item["answer"] = columns["ANSWER_A"][i]
            rows.append(item)
        return rows

    def execute(self, requests):
        parsed, errors = [], {}
        for r, request in enumerate(requests):
            try:
                parsed.append(self._rows(request))
            except (ValueError, UnicodeDecodeError) as e:
                errors[r] = str(e)
                parsed.append([])
        flat = [item for rows in parsed for item in rows]
        verdicts = self.judge.judge(flat) if flat else []
        responses, at = [], 0
        for r, rows in enumerate(parsed):
            if r in errors:
                responses.append(pb_utils.InferenceResponse(error=_bad_input(errors[r])))
                continue
            mine = verdicts[at : at + len(rows)]
            at += len(rows)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("LABEL", np.array([[v["label"].encode()] for v in mine], dtype=object)),
                        pb_utils.Tensor("SCORE", np.array([[v["score"]] for v in mine], dtype=np.float32)),
                        pb_utils.Tensor("CONFIDENCE", np.array([[v["confidence"]] for v in mine], dtype=np.float32)),
                        pb_utils.Tensor("PROBS", np.array([v["probs"] for v in mine], dtype=np.float32)),
                        pb_utils.Tensor("SWAP_CONSISTENT", np.array([[v["swap_consistent"]] for v in mine], dtype=bool)),
                        # NaN: this version has no novelty index
                        pb_utils.Tensor("NOVELTY", np.array([[np.nan if v.get("novelty") is None else v["novelty"]]
                                                             for v in mine], dtype=np.float32)),
                    ]
                )
            )
        return responses
