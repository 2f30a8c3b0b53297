"""TensorRT-LLM judge, step 1: one answer order's six text fields -> the judge prompt's token ids.

Contract: for every row of every request, the prompt of ``generative.prompt_ids`` (chat template of the tokenizer
in ``tokenizer_dir``, texts truncated so the prompt is at most ``max_input_len`` tokens) as ``INPUT_ID`` (rows
right-padded with the pad id; ``REQUEST_INPUT_LEN`` is each row's true length), and the fixed request settings of a
single-token verdict: ``REQUEST_OUTPUT_LEN`` 1, greedy ``RUNTIME_TOP_K`` 1, ``RETURN_GENERATION_LOGITS`` true, the
tokenizer's end and pad ids. A row whose KIND is not pairwise/pointwise fails its request with an error naming
it. Imports only what the Triton TensorRT-LLM container has (numpy, transformers, the python backend utils) plus
``generative.py`` and ``verdict_math.py``, which ``infra/trtllm/assemble.py`` copies beside this file.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generative  # noqa: E402  (copied beside this file)

FIELDS = ("KIND", "CRITERION", "QUESTION", "ANSWER_A", "ANSWER_B", "REFERENCE")


def _parameter(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value", default)
    if value is None or value.startswith("${"):
        if default is None:
            raise ValueError(f"model parameter {key!r} is not set (fill it with infra/trtllm/assemble.py)")
        return default
    return value


def _texts(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input {name} is missing")
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in tensor.as_numpy().reshape(-1)]


class TritonPythonModel:
    def initialize(self, args):
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        self.tokenizer = AutoTokenizer.from_pretrained(_parameter(config, "tokenizer_dir"))
        self.max_input_len = int(_parameter(config, "max_input_len"))
        self.end_id, self.pad_id = generative.special_token_ids(self.tokenizer)
        for kind in generative.LABELS:  # refuse a tokenizer whose verdict words are not single tokens, at load
            generative.verdict_token_ids(self.tokenizer, kind)

    def _row_ids(self, fields):
        item = generative.JudgeInput(
            kind=fields["KIND"],
            criterion=fields["CRITERION"],
            question=fields["QUESTION"],
            answer_a=fields["ANSWER_A"],
            answer_b=fields["ANSWER_B"],
            reference=fields["REFERENCE"],
        )
        return generative.prompt_ids(self.tokenizer, item, self.max_input_len)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                columns = {name: _texts(request, name) for name in FIELDS}
                n = len(columns["KIND"])
                rows = [self._row_ids({name: columns[name][i] for name in FIELDS}) for i in range(n)]
                width = max(len(r) for r in rows)
                input_ids = np.full((n, width), self.pad_id, dtype=np.int32)
                for i, r in enumerate(rows):
                    input_ids[i, : len(r)] = r
                lengths = np.array([[len(r)] for r in rows], dtype=np.int32)
                outputs = [
                    pb_utils.Tensor("INPUT_ID", input_ids),
                    pb_utils.Tensor("REQUEST_INPUT_LEN", lengths),
                    pb_utils.Tensor("REQUEST_OUTPUT_LEN", np.ones((n, 1), dtype=np.int32)),
                    pb_utils.Tensor("OUT_END_ID", np.full((n, 1), self.end_id, dtype=np.int32)),
                    pb_utils.Tensor("OUT_PAD_ID", np.full((n, 1), self.pad_id, dtype=np.int32)),
                    pb_utils.Tensor("RUNTIME_TOP_K", np.ones((n, 1), dtype=np.int32)),
                    pb_utils.Tensor("RETURN_GENERATION_LOGITS", np.ones((n, 1), dtype=np.bool_)),
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except (ValueError, TypeError) as e:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e))))
        return responses
