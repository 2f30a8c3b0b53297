"""The judge's encoder on ONNX Runtime: the same embeddings and verdicts as torch (fp32), int8 close to them, the
fine-tuned layers carried into the graph, the runtime recorded in student.json and refused clearly when broken."""

import json
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from judge_engine.model import student
from judge_engine.model.student import Encoder, Judge, joint, texts_of
from judge_engine.training.export import export, prepare
from tests_support import with_perturbed_top_layer

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def texts(sample_items):
    """Real texts of every length in the sample, plus joint (question, answer) pairs and an empty text."""
    out = list(dict.fromkeys(t for it in sample_items for t in texts_of(it)))
    return out + [joint(it["question"], it.get("answer") or it["answer_a"]) for it in sample_items[:8]] + [""]


@pytest.fixture(scope="module")
def fp32(tiny_judge, tmp_path_factory):
    return prepare(tiny_judge.model_dir, tmp_path_factory.mktemp("onnx") / "fp32", "onnx", "fp32")


@pytest.fixture(scope="module")
def int8(tiny_judge, tmp_path_factory):
    return prepare(tiny_judge.model_dir, tmp_path_factory.mktemp("onnx") / "int8", "onnx", "int8")


def test_fp32_embeddings_equal_torch_on_real_texts(fp32, texts):
    judge = Judge(fp32)
    assert judge.encoder.runtime == "onnx" and judge.encoder.model is None
    torch_vectors = Encoder().encode(texts)
    onnx_vectors = judge.encoder.encode(texts)
    assert onnx_vectors.shape == torch_vectors.shape and onnx_vectors.dtype == np.float32
    assert np.abs(onnx_vectors - torch_vectors).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors[:-1], axis=1), 1.0, atol=1e-5)
    alone = np.stack([judge.encoder.encode([t])[0] for t in texts[:12]])  # batching by length changes nothing
    assert np.abs(alone - onnx_vectors[:12]).max() < 1e-5


def test_fp32_verdicts_equal_the_torch_judge(fp32, tiny_judge, sample_items):
    torch_verdicts = Judge(tiny_judge.model_dir).judge(sample_items, first_order=True)
    onnx_verdicts = Judge(fp32).judge(sample_items, first_order=True)
    for a, b in zip(torch_verdicts, onnx_verdicts):
        assert (a["label"], a["swap_consistent"], a.get("first_order_label")) == \
            (b["label"], b["swap_consistent"], b.get("first_order_label"))
        assert b["probs"] == pytest.approx(a["probs"], abs=1e-4)
        assert b["novelty"] == pytest.approx(a["novelty"], abs=1e-3)


def test_int8_is_close_to_fp32_and_labels_mostly_agree(fp32, int8, texts, sample_items):
    meta = json.loads((int8 / "student.json").read_text())
    assert (meta["runtime"], meta["precision"], meta["encoder_file"]) == ("onnx", "int8", "encoder.onnx")
    assert (int8 / "encoder.onnx").stat().st_size < 0.5 * (fp32 / "encoder.onnx").stat().st_size  # int8 weights
    a, b = Judge(fp32), Judge(int8)
    cosine = (a.encoder.encode(texts[:-1]) * b.encoder.encode(texts[:-1])).sum(axis=1)
    assert cosine.min() > 0.95 and np.median(cosine) > 0.98  # measured: min 0.977, median 0.993
    assert not np.allclose(cosine, 1.0, atol=1e-5)  # the quantised graph is really used
    same = np.mean([x["label"] == y["label"] for x, y in zip(a.judge(sample_items), b.judge(sample_items))])
    assert same >= 0.85  # measured: 0.99 of the sample's 460 items


def test_finetuned_top_layers_are_in_the_onnx_graph(tiny_judge, tmp_path, texts):
    encoder = Encoder()
    model = tmp_path / "model"
    with_perturbed_top_layer(tiny_judge.model_dir, encoder, model)
    finetuned = Judge(model).encoder.encode(texts[:20])
    onnx_dir = prepare(model, tmp_path / "onnx", "onnx")
    served = Judge(onnx_dir).encoder.encode(texts[:20])
    assert np.abs(served - finetuned).max() < 1e-4
    assert np.abs(served - encoder.encode(texts[:20])).max() > 1e-2  # not the frozen encoder


def test_export_records_the_runtime_and_can_go_back_to_torch(fp32, tmp_path, sample_items):
    version = export(fp32, tmp_path / "repo", "judge")  # a prepared directory is exported as it is
    meta = json.loads((version / "student.json").read_text())
    assert (meta["runtime"], meta["precision"], meta["model_version"]) == ("onnx", "fp32", "1")
    assert (version / "encoder.onnx").is_file() and (version / "student.py").is_file()
    back = export(version, tmp_path / "repo", "judge", runtime="torch")
    assert json.loads((back / "student.json").read_text())["runtime"] == "torch"
    assert not (back / "encoder.onnx").exists() and Judge(back).encoder.runtime == "torch"


def test_onnx_session_takes_the_threads_it_is_given(fp32):
    session = Judge(fp32, threads=1).encoder.session
    assert session.get_session_options().intra_op_num_threads == 1
    torch_threads = torch.get_num_threads()
    assert Judge(fp32).encoder.session.get_session_options().intra_op_num_threads == torch_threads


def _ops(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_the_cpu_session_runs_residual_and_layer_norm_unfused(fp32, tmp_path, monkeypatch):
    exported = _ops(fp32 / "encoder.onnx")
    assert exported["SkipLayerNormalization"] == 0 and exported["Attention"] >= 1
    assert exported["LayerNormalization"] == 2 * exported["Attention"]  # two per layer, kept apart from their Adds
    student.onnx_session(fp32 / "encoder.onnx", optimized_to=tmp_path / "cpu.onnx")
    ran = _ops(tmp_path / "cpu.onnx")
    assert ran["SkipLayerNormalization"] == 0 and ran["LayerNormalization"] == exported["LayerNormalization"]
    assert ran["Attention"] == exported["Attention"] and ran["BiasGelu"] == exported["BiasGelu"] > 0
    # without CPU_UNFUSED, ONNX Runtime folds them back into its slow SkipLayerNormalization when it loads the graph
    monkeypatch.setattr(student, "CPU_UNFUSED", ())
    student.onnx_session(fp32 / "encoder.onnx", optimized_to=tmp_path / "fused.onnx")
    assert _ops(tmp_path / "fused.onnx")["SkipLayerNormalization"] == exported["LayerNormalization"]


def test_onnx_threads_spin_only_when_asked(fp32, sample_items):
    spin = "session.intra_op.allow_spinning"
    quiet, spinning = Judge(fp32), Judge(fp32, spinning=True)
    assert quiet.encoder.session.get_session_options().get_session_config_entry(spin) == "0"
    assert spinning.encoder.session.get_session_options().get_session_config_entry(spin) == "1"
    few = sample_items[:4]
    assert [v["label"] for v in spinning.judge(few)] == [v["label"] for v in quiet.judge(few)]


def test_bad_runtime_settings_are_refused_naming_the_fix(tiny_judge, fp32, tmp_path):
    with pytest.raises(ValueError, match="--runtime onnx"):
        prepare(tiny_judge.model_dir, tmp_path / "a", "torch", "int8")
    with pytest.raises(ValueError, match="precision must be one of fp32, int8"):
        prepare(tiny_judge.model_dir, tmp_path / "b", "onnx", "int4")
    broken = tmp_path / "broken"
    shutil.copytree(fp32, broken)
    (broken / "encoder.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="--runtime onnx"):
        Judge(broken)
    meta = json.loads((broken / "student.json").read_text())
    (broken / "student.json").write_text(json.dumps({**meta, "runtime": "tensorrt"}))
    with pytest.raises(RuntimeError, match="runtime must be one of torch, onnx"):
        Judge(broken)
    with pytest.raises(RuntimeError, match="fine-tuning needs"):
        Judge(fp32).encoder.lower_states(["text"], 1)
