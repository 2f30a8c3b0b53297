"""Test model: upper-cases each UTF-8 text and counts its characters (one row per request row)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            decoded = [t.decode("utf-8") for t in texts]
            upper = np.array([[s.upper().encode("utf-8")] for s in decoded], dtype=object)
            chars = np.array([[len(s)] for s in decoded], dtype=np.int64)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("UPPER", upper), pb_utils.Tensor("CHARS", chars)]
                )
            )
        return responses
