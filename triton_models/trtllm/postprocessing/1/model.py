"""TensorRT-LLM judge, step 3: the generated position's logits -> the verdict of this one answer order.

Contract: for every row, the first generated position's logits (``GENERATION_LOGITS`` ``[beam, steps, vocab]``,
beam 0, step 0) are reduced to the verdict tokens' logits (``generative.verdict_logits``, token ids resolved from
the tokenizer in ``tokenizer_dir`` at load) and turned into the CPU judge's outputs with ``verdict_math.verdicts``
at the kind's temperature: ``LABEL``, ``SCORE``, ``CONFIDENCE``, ``PROBS`` (width 3, pointwise padded with 0), and
``VERDICT_LOGITS`` (width 3, pointwise padded with float32 min) for the BLS model ``judge``, which combines both
orders. With ``check_greedy_token`` on, a row whose generated token (``TOKENS_BATCH`` at ``SEQUENCE_LENGTH - 1``)
is not the maximum of those logits fails its request: the logits are not the generated position's (a TensorRT-LLM
version that returns the first token's logits elsewhere; see infra/trtllm/README.md). Imports only what the
Triton TensorRT-LLM container has plus ``generative.py``/``verdict_math.py`` copied beside this file.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generative  # noqa: E402  (copied beside this file)
import verdict_math  # noqa: E402  (copied beside this file)


def _parameter(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value", default)
    if value is None or value.startswith("${"):
        if default is None:
            raise ValueError(f"model parameter {key!r} is not set (fill it with infra/trtllm/assemble.py)")
        return default
    return value


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input {name} is missing")
    return tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        tokenizer = AutoTokenizer.from_pretrained(_parameter(config, "tokenizer_dir"))
        self.token_ids = {kind: generative.verdict_token_ids(tokenizer, kind) for kind in generative.LABELS}
        self.temperatures = {
            kind: float(_parameter(config, f"temperature_{kind}", "1.0")) for kind in generative.LABELS
        }
        self.check_greedy = _parameter(config, "check_greedy_token", "true").lower() in ("1", "true", "yes")

    def _row(self, kind, logits, tokens, length):
        row = generative.first_step_row(logits)
        if self.check_greedy:
            beam0 = np.atleast_2d(tokens)[0]  # [beam, tokens] -> beam 0
            position = int(np.atleast_1d(length)[0]) - 1 if length is not None else beam0.shape[0] - 1
            if not 0 <= position < beam0.shape[0]:
                raise ValueError(f"no generated token in output_ids (sequence length {position + 1})")
            generated = int(beam0[position])
            if not generative.is_greedy_token(row, generated):
                raise ValueError(
                    f"generation logits do not belong to the generated token {generated} (its logit is not the "
                    "row's maximum): this TensorRT-LLM version returns the first token's logits elsewhere; see "
                    "infra/trtllm/README.md"
                )
        z = generative.verdict_logits(row, self.token_ids[kind])
        verdict = verdict_math.verdicts(kind, z[None, :], self.temperatures[kind])[0]
        return verdict, generative.pad_logits(z[None, :])[0]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                kinds = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in _input(request, "KIND").ravel()]
                logits = _input(request, "GENERATION_LOGITS")
                tokens = _input(request, "TOKENS_BATCH")
                lengths_tensor = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH")
                lengths = lengths_tensor.as_numpy() if lengths_tensor is not None else None
                labels, scores, confidences, probs, verdict_logits = [], [], [], [], []
                for i, kind in enumerate(kinds):
                    if kind not in generative.LABELS:
                        raise ValueError(f"KIND must be one of {sorted(generative.LABELS)}, got {kind!r}")
                    v, z = self._row(kind, logits[i], tokens[i], None if lengths is None else lengths[i])
                    labels.append([v["label"].encode("utf-8")])
                    scores.append([v["score"]])
                    confidences.append([v["confidence"]])
                    probs.append(verdict_math.padded_probs(v["probs"], generative.WIDTH))
                    verdict_logits.append(z)
                outputs = [
                    pb_utils.Tensor("LABEL", np.array(labels, dtype=object)),
                    pb_utils.Tensor("SCORE", np.array(scores, dtype=np.float32)),
                    pb_utils.Tensor("CONFIDENCE", np.array(confidences, dtype=np.float32)),
                    pb_utils.Tensor("PROBS", np.array(probs, dtype=np.float32)),
                    pb_utils.Tensor("VERDICT_LOGITS", np.array(verdict_logits, dtype=np.float32)),
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except (ValueError, TypeError, IndexError) as e:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e))))
        return responses
