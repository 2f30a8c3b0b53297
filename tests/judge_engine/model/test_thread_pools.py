"""A judge call runs numpy's BLAS on one thread, and torch too where ONNX Runtime's threads run the encoder; the
caller's thread counts come back afterwards, also after an error."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from judge_engine.model.student import Judge
from judge_engine.model.thread_pools import Scoped
from judge_engine.training.export import prepare

pytestmark = pytest.mark.filterwarnings("ignore")


def _blas_threads() -> list[int]:
    np.dot(np.ones((4, 4)), np.ones((4, 4)))  # numpy's BLAS is loaded
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    """Torch and numpy's BLAS on two threads, as on this project's 2-core machines; the test's own counts after."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(2, user_api="blas"):
        assert set(_blas_threads()) == {2}
        yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("torch_single", [True, False])
def test_the_scope_limits_blas_and_torch_only_when_asked_then_restores_them(two_threads, torch_single):
    with Scoped(torch_single):
        assert set(_blas_threads()) == {1}
        assert torch.get_num_threads() == (1 if torch_single else 2)
    assert set(_blas_threads()) == {2} and torch.get_num_threads() == 2


def test_an_error_inside_the_scope_still_restores_the_counts(two_threads):
    scope = Scoped(True)
    with pytest.raises(RuntimeError, match="boom"), scope:
        raise RuntimeError("boom")
    assert set(_blas_threads()) == {2} and torch.get_num_threads() == 2
    with scope:  # reusable, and nested scopes unwind in order
        with scope:
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1 and set(_blas_threads()) == {1}
    assert set(_blas_threads()) == {2} and torch.get_num_threads() == 2


@pytest.fixture(scope="module")
def onnx_judge(tiny_judge, tmp_path_factory):
    return Judge(prepare(tiny_judge.model_dir, tmp_path_factory.mktemp("onnx") / "fp32", "onnx", "fp32"))


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_a_judge_call_runs_its_side_work_on_one_thread(two_threads, runtime, onnx_judge, tiny_judge, sample_items,
                                                       monkeypatch):
    judge = onnx_judge if runtime == "onnx" else Judge(tiny_judge.model_dir)
    seen = []
    heads = judge.heads.judge_vectors

    def recording(items, vectors):
        seen.append((torch.get_num_threads(), set(_blas_threads())))
        return heads(items, vectors)

    monkeypatch.setattr(judge.heads, "judge_vectors", recording)
    verdicts = judge.judge(sample_items[:6])
    assert len(verdicts) == 6 and all(v["label"] for v in verdicts)
    # the ONNX encoder has its own threads, so torch runs the heads on one; the torch encoder keeps torch's two
    assert seen == [(1 if runtime == "onnx" else 2, {1})]
    assert torch.get_num_threads() == 2 and set(_blas_threads()) == {2}
