"""Fine-tuning the encoder's top layers: the split forward pass, the saved layers, the schedule's guarantees."""

import json

import numpy as np
import pytest
import torch

from judge_engine.dataset import label_examples, load_gold, split
from judge_engine.model.student import Encoder, Judge
from judge_engine.training.export import export
from tests_support import with_perturbed_top_layer

TEXTS = ["What is the capital of France?", "Paris.", "It is Paris, a city on the Seine with two million people.", ""]


@pytest.fixture(scope="module")
def encoder():
    return Encoder()


@pytest.mark.parametrize("top", [1, 2])
def test_lower_states_then_top_layers_equal_the_full_forward(encoder, top):
    states = encoder.lower_states(TEXTS, top)
    assert [s.dtype for s in states] == [np.float16] * len(TEXTS)
    assert len(states[0]) < len(states[2])  # padding dropped
    with torch.no_grad():
        split = encoder.top(states, encoder.layers[-top:]).numpy()
    # float16 states: equal to the full forward pass up to that rounding
    np.testing.assert_allclose(split, encoder.encode(TEXTS), atol=2e-3)
    with torch.no_grad():  # run in chunks of similar length, given back in the input order
        np.testing.assert_allclose(encoder.top(states, encoder.layers[-top:], chunk=1).numpy(), split, atol=1e-5)


def test_finetuned_layers_are_saved_exported_and_served_by_judge(tiny_judge, encoder, tmp_path):
    model = tmp_path / "model"
    layers, heads, meta = with_perturbed_top_layer(tiny_judge.model_dir, encoder, model)
    saved = json.loads((model / "student.json").read_text())
    assert saved["finetuned_layers"] == 1 and saved["architecture"].startswith("minilm-top1-finetuned")

    judge = Judge(model)
    with torch.no_grad():
        expected = encoder.top(encoder.lower_states(TEXTS, 1), layers).numpy()
    np.testing.assert_allclose(judge.encoder.encode(TEXTS), expected, atol=2e-3)
    assert np.abs(expected - encoder.encode(TEXTS)).max() > 1e-2  # the perturbation is visible: the file was used

    version = export(model, tmp_path / "repo")
    assert (version / "encoder_top.pt").is_file()
    # the exported version judges exactly like the directory it came from
    item = {"kind": "pointwise", "criterion": "correct", "question": TEXTS[0], "answer": TEXTS[1], "reference": None}
    assert Judge(version).judge([item])[0]["probs"] == pytest.approx(judge.judge([item])[0]["probs"], abs=1e-6)

    # saving again without fine-tuned layers removes the stale file, so a frozen model never loads old layers
    heads.save(model, {k: v for k, v in meta.items() if k not in ("heads", "temperature")})
    assert not (model / "encoder_top.pt").exists()
    assert json.loads((model / "student.json").read_text())["finetuned_layers"] == 0


def test_training_with_finetuning_never_ends_worse_on_validation(sample_gold, tmp_path):
    from judge_engine.training.trainer import TrainConfig, train

    out = tmp_path / "model"
    result = train(TrainConfig(gold=(sample_gold,), out=out, progress=False, epochs=40, val_fraction=0.2,
                               test_fraction=0.25, finetune_layers=1, finetune_epochs=1),
                   log=lambda *_: None)
    report = json.loads((out / "training_report.json").read_text())["finetune"]
    losses = report["val_loss_by_epoch"]
    assert len(losses) == 2 and report["layers"] == 1
    assert losses[report["epochs_kept"]] == min(losses)
    meta = json.loads((out / "student.json").read_text())
    assert meta["finetuned_layers"] == (1 if report["epochs_kept"] else 0)
    assert (out / "encoder_top.pt").is_file() == bool(report["epochs_kept"])
    assert result.seconds["finetune_s"] > 0
    # what was measured on the test split is what the saved model (fine-tuned layers included) judges
    examples, _ = label_examples(load_gold([sample_gold]).items, "gpt-4")
    test = split(examples, val=0.2, test=0.25, seed=13)["test"]
    verdicts = Judge(out).judge([e.item for e in test])
    for kind in ("pairwise", "pointwise"):
        pairs = [(v["label"], e.human_label) for v, e in zip(verdicts, test) if e.item["kind"] == kind]
        assert result.test[kind]["accuracy_vs_human"] == pytest.approx(np.mean([a == b for a, b in pairs]))
