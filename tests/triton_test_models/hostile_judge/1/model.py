"""Test model: the judge's interface, misbehaving on purpose according to the QUESTION of a request's rows.

- a row whose question contains ``RAISE``: the whole request fails with an error (the model raises for that input);
- a request with a row containing ``SHORT``: one row fewer than asked for comes back;
- a request with a row containing ``SHAPE``: PROBS comes back with 2 columns instead of 3;
- otherwise every row is judged ``pass`` with confidence 0.9.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            questions = [q.decode("utf-8", "replace") for q in
                         pb_utils.get_input_tensor_by_name(request, "QUESTION").as_numpy().reshape(-1)]
            n = len(questions)
            if any("RAISE" in q for q in questions):
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError("hostile_judge: this input always fails")))
                continue
            rows = n - 1 if any("SHORT" in q for q in questions) else n
            width = 2 if any("SHAPE" in q for q in questions) else 3
            outputs = [
                pb_utils.Tensor("LABEL", np.array([[b"pass"]] * rows, dtype=object)),
                pb_utils.Tensor("SCORE", np.full((rows, 1), 0.9, dtype=np.float32)),
                pb_utils.Tensor("CONFIDENCE", np.full((rows, 1), 0.9, dtype=np.float32)),
                pb_utils.Tensor("PROBS", np.full((rows, width), 1.0 / width, dtype=np.float32)),
                pb_utils.Tensor("SWAP_CONSISTENT", np.ones((rows, 1), dtype=bool)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
