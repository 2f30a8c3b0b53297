"""The embedded Triton server runs python-backend models in the serving venv and batches requests."""

import asyncio

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_python_backend_model_answers_bytes_requests(stack):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(stack.triton.http_url)
    assert client.is_model_ready("text_stats")
    texts = np.array([["héllo"], ["judge me"]], dtype=object)
    inp = httpclient.InferInput("TEXT", texts.shape, "BYTES")
    inp.set_data_from_numpy(texts)
    result = client.infer("text_stats", [inp])
    assert [t.decode() for t in result.as_numpy("UPPER").reshape(-1)] == ["HÉLLO", "JUDGE ME"]
    assert result.as_numpy("CHARS").reshape(-1).tolist() == [5, 8]


def test_concurrent_grpc_requests_are_served(stack):
    import tritonclient.grpc.aio as grpcclient

    async def run():
        client = grpcclient.InferenceServerClient(stack.triton.url)

        async def one(i):
            data = np.array([[f"t{i}".encode()]], dtype=object)
            inp = grpcclient.InferInput("TEXT", data.shape, "BYTES")
            inp.set_data_from_numpy(data)
            res = await client.infer("text_stats", [inp])
            return res.as_numpy("UPPER")[0][0].decode()

        try:
            return await asyncio.gather(*(one(i) for i in range(32)))
        finally:
            await client.close()

    assert asyncio.run(run()) == [f"T{i}" for i in range(32)]


def test_repository_index_lists_loaded_models(stack):
    from stack import services as stack_mod
    from stack import triton

    record = stack_mod.read_records(stack)["triton"]
    index = {m["name"]: m.get("state") for m in triton.loaded_models(stack, record)}
    assert index.get("text_stats") == "READY"
