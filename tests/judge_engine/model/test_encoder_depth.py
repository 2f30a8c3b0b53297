"""A judge on the first N of the encoder's layers (issue 13): the encoder really stops there, training records the
depth, serving and the ONNX export run that depth, embeddings are cached per depth, and bad depths are refused."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from benchmarks.encoder_depth import summarise
from cli.main import app
from judge_engine.model.student import ENCODER_DEPTH, Encoder, Judge, pool, texts_of
from judge_engine.training.embedding_cache import EmbeddingCache, sentence_namespace
from judge_engine.training.export import prepare
from judge_engine.training.trainer import TrainConfig, train
from operations.demo import SERVED_ENCODER_LAYERS, TRAIN_FILES, default_training

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def texts(sample_items):
    return list(dict.fromkeys(t for it in sample_items[:40] for t in texts_of(it)))


@pytest.fixture(scope="module")
def shallow(sample_gold, tmp_path_factory):
    """A judge trained on the sample with the encoder's first two layers, with its own embedding cache."""
    root = tmp_path_factory.mktemp("depth")
    cfg = TrainConfig(gold=(sample_gold,), out=root / "model", progress=False, epochs=30, val_fraction=0.2,
                      encoder_layers=2, cache=root / "cache.sqlite")
    return train(cfg, log=lambda *_: None), cfg


def test_a_shallow_encoder_is_the_full_models_hidden_state_at_that_layer(texts):
    shallow, full = Encoder(layers=2), Encoder()
    assert len(shallow.model.encoder.layer) == 2 and shallow.config.num_hidden_layers == 2 and shallow.depth == 2
    batch = full.tokenizer(texts[:6], padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        states = full.model(**batch, output_hidden_states=True).hidden_states  # embeddings, then each layer's output
    want = pool(states[2], batch["attention_mask"]).numpy()
    got = shallow.encode(texts[:6])
    assert np.abs(got - want).max() < 1e-5
    cosine = (got * full.encode(texts[:6])).sum(axis=1)
    assert cosine.max() < 0.999  # not the full encoder's vectors


@pytest.mark.parametrize("bad", [0, ENCODER_DEPTH + 1, -1, True, "4", 2.0])
def test_a_depth_outside_the_encoder_is_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match=f"encoder_layers must be a whole number from 1 to {ENCODER_DEPTH}"):
        Encoder(layers=bad)


def test_training_records_the_depth_and_the_judge_serves_it(shallow, texts, sample_items):
    result, cfg = shallow
    meta = json.loads((result.model_dir / "student.json").read_text())
    assert meta["encoder_layers"] == 2 and meta["config"]["encoder_layers"] == 2
    judge = Judge(result.model_dir)
    assert judge.encoder.depth == 2 and len(judge.encoder.layers) == 2
    assert np.abs(judge.encoder.encode(texts[:10]) - Encoder(layers=2).encode(texts[:10])).max() < 1e-5
    assert result.test["pairwise"]["accuracy_vs_human"] > 0.75  # the sample is easy; a broken judge sits near 0.5
    # the vectors were cached under the depth's own namespace, not the full encoder's
    cache = EmbeddingCache(cfg.cache, namespace=sentence_namespace(cfg.max_length, 2))
    full = EmbeddingCache(cfg.cache, namespace=sentence_namespace(cfg.max_length, ENCODER_DEPTH))
    try:
        assert len(cache.get_many(texts)) == len(texts) and not full.get_many(texts)
    finally:
        cache.close(), full.close()
    assert sentence_namespace(256, ENCODER_DEPTH) == sentence_namespace(256) != sentence_namespace(256, 2)


def test_the_onnx_export_holds_only_the_shallow_layers_and_judges_alike(shallow, sample_items, tmp_path):
    result, _ = shallow
    onnx_dir = prepare(result.model_dir, tmp_path / "onnx", "onnx", "fp32")
    graph = onnx.load(str(onnx_dir / "encoder.onnx")).graph
    assert sum(node.op_type == "Attention" for node in graph.node) == 2
    served = Judge(onnx_dir)
    assert served.encoder.runtime == "onnx" and served.encoder.config.num_hidden_layers == 2
    for a, b in zip(Judge(result.model_dir).judge(sample_items[:60]), served.judge(sample_items[:60])):
        assert a["label"] == b["label"] and b["probs"] == pytest.approx(a["probs"], abs=1e-4)


def test_bad_depths_in_training_and_in_a_saved_version_are_clear_errors(shallow, sample_gold, tmp_path):
    with pytest.raises(ValueError, match="--finetune-layers 3 is more than the encoder's 2 layers"):
        train(TrainConfig(gold=(sample_gold,), out=tmp_path / "m", progress=False, encoder_layers=2,
                          finetune_layers=3), log=lambda *_: None)
    with pytest.raises(ValueError, match="encoder_layers"):
        train(TrainConfig(gold=(sample_gold,), out=tmp_path / "m", progress=False, encoder_layers=9),
              log=lambda *_: None)
    broken = tmp_path / "broken"
    shutil.copytree(shallow[0].model_dir, broken)
    meta = json.loads((broken / "student.json").read_text())
    (broken / "student.json").write_text(json.dumps(meta | {"encoder_layers": 9}))
    with pytest.raises(RuntimeError, match=r"broken/student.json: encoder_layers must be a whole number"):
        Judge(broken)


def test_the_cli_trains_at_a_depth_and_refuses_one_out_of_range(sample_gold, tmp_path):
    out = tmp_path / "cli-model"
    common = ["train", "--gold", str(sample_gold), "--out", str(out), "--finetune-layers", "0", "--epochs", "5"]
    refused = CliRunner().invoke(app, [*common, "--encoder-layers", "7"])
    assert refused.exit_code != 0 and "--encoder-layers" in refused.output and not out.exists()
    done = CliRunner().invoke(app, [*common, "--encoder-layers", "3"])
    assert done.exit_code == 0, done.output
    assert json.loads((out / "student.json").read_text())["encoder_layers"] == 3


def test_the_embedded_default_trains_four_layers_and_the_depth_study_pairs_its_splits(tmp_path):
    cfg = default_training([tmp_path / f for f in TRAIN_FILES], tmp_path / "m")
    assert SERVED_ENCODER_LAYERS == 4 and cfg.encoder_layers == 4 and cfg.finetune_layers == 0
    assert cfg.gold == tuple(tmp_path / f for f in TRAIN_FILES)
    assert default_training([], tmp_path, encoder_layers=6, seed=3).encoder_layers == 6
    keys = ("accuracy_vs_training_label", "accuracy_vs_human", "kappa_vs_human", "ece")
    def run(acc, pandalm):
        return dict.fromkeys(keys, acc) | {"per_file": {"pandalm.jsonl": {"accuracy_vs_human": pandalm,
                                                                          "accuracy_vs_teacher": acc}}}

    runs = {6: {1: run(0.60, 0.50), 2: run(0.70, 0.60)}, 4: {1: run(0.59, 0.56), 2: run(0.68, 0.58)}}
    summary = summarise(runs, full=6)
    change = summary[4]["accuracy_vs_training_label_change_points"]
    assert change["per_seed"] == [-1.0, -2.0] and change["mean"] == -1.5 and change["standard_error"] == 0.5
    pandalm = summary[4]["per_file"]["pandalm.jsonl"]
    assert pandalm["accuracy_vs_human"] == pytest.approx(0.57)
    assert pandalm["accuracy_vs_human_change_points"]["per_seed"] == [6.0, -2.0]
    assert pandalm["accuracy_vs_human_change_points"]["mean"] == 2.0
    assert summary[4]["accuracy_vs_human"] == pytest.approx(0.635) and "accuracy_vs_human_change_points" not in \
        summary[6]
