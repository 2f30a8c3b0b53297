"""The inline judge's Triton model (``triton_models/judge/model.py``) sizes its threads as its config says: with the
encoder on ONNX Runtime on CPU, ONNX Runtime gets ``torch_threads`` and torch runs only the small heads, on one
thread during each call (the version's own ``thread_pools.py``, copied beside ``student.py``); a torch-encoder version
keeps ``torch_threads`` for torch. numpy's BLAS runs on one thread during a call either way.

Why it matters (issue 13): two torch threads waking beside ONNX Runtime's took 53-57 ms per batch-1 PandaLM item
through Triton against 42-45 ms with one (alternating runs of ``benchmarks.judge``). The real ``initialize`` runs on
real exported versions; only ``triton_python_backend_utils`` is a stand-in (no Triton stub in this process)."""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from judge_engine.training.export import export

pytestmark = pytest.mark.filterwarnings("ignore")


def _initialize(version_dir: Path, threads: int):
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location("judge_model_under_test", version_dir / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = {"parameters": {"torch_threads": {"string_value": str(threads)}}}
    model.initialize({"model_repository": str(version_dir.parent), "model_version": version_dir.name,
                      "model_config": json.dumps(config), "model_instance_kind": "CPU"})
    return model


# what a version directory's model.py imports from beside it (and this test's names): forgotten afterwards, so no
# later import finds this version's copies. Library modules stay loaded: a C extension (onnx) must not load twice
VERSION_MODULES = ("student", "verdict_math", "novelty", "thread_pools", "judge_model_under_test",
                   "triton_python_backend_utils")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    kept = {name: sys.modules[name] for name in VERSION_MODULES if name in sys.modules}
    path = list(sys.path)
    yield
    torch.set_num_threads(before)
    for name in VERSION_MODULES:
        sys.modules.pop(name, None)
    sys.modules.update(kept)
    sys.path[:] = path


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_torch_runs_on_one_thread_only_when_onnx_runtime_runs_the_encoder(runtime, tiny_judge, tmp_path,
                                                                         restore_threads, sample_items,
                                                                         monkeypatch):
    from threadpoolctl import threadpool_info

    version = export(tiny_judge.model_dir, tmp_path / "repository", "judge", runtime=runtime)
    model = _initialize(version, threads=2)
    judge = model.judge
    assert type(judge).__module__ == "student"  # the version's own copy, with its own thread_pools
    onnx = judge.encoder.session is not None
    assert onnx == (runtime == "onnx")
    assert torch.get_num_threads() == 2
    if onnx:  # ONNX Runtime keeps the configured threads
        assert judge.encoder.session.get_session_options().intra_op_num_threads == 2
    seen, heads = [], judge.heads.judge_vectors

    def recording(items, vectors):
        blas = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
        seen.append((torch.get_num_threads(), blas))
        return heads(items, vectors)

    monkeypatch.setattr(judge.heads, "judge_vectors", recording)
    assert len(judge.judge(sample_items[:4])) == 4
    assert seen == [(1 if onnx else 2, {1})] and torch.get_num_threads() == 2
