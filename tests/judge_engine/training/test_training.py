"""`judgeline train` on the project's synthetic sample: learns, calibrates, keeps the test split out, saves."""

import json

import pytest
import torch

from judge_engine.dataset import fingerprint, label_examples, load_gold, split
from judge_engine.model.student import Judge


def test_learns_the_sample_and_measures_it_held_out(tiny_judge):
    # the sample is easy (10% teacher noise): a broken judge sits near the majority label (~0.45 / ~0.6)
    for kind, floor in (("pairwise", 0.85), ("pointwise", 0.75)):
        m = tiny_judge.test[kind]
        assert m["n"] > 20
        assert m["accuracy_vs_human"] > floor, m
        assert 0.0 <= m["ece"] <= 1.0
        assert 0.05 <= tiny_judge.temperature[kind] <= 20
    assert tiny_judge.test["pairwise"]["swap_consistency"] > 0.8


def test_saved_model_records_provenance_and_never_the_test_items(tiny_judge, sample_gold):
    meta = json.loads((tiny_judge.model_dir / "student.json").read_text())
    assert meta["teacher"] == "gpt-4" and meta["trained_kinds"] == ["pairwise", "pointwise"]
    assert meta["data"][0]["sha256"] and meta["split"]["by"] == "question"
    examples, _ = label_examples(load_gold([sample_gold]).items, "gpt-4")
    parts = split(examples, val=0.2, test=0.25, seed=13)
    trained = set(meta["trained_on"])
    assert trained == {e.fingerprint for e in parts["train"] + parts["val"]}
    assert not trained & {e.fingerprint for e in parts["test"]}
    assert (tiny_judge.model_dir / "reliability.png").stat().st_size > 1000


def test_saved_model_carries_its_validation_evidence_and_novelty_index(tiny_judge, sample_gold):
    from judge_engine.model.novelty import NoveltyIndex

    meta = json.loads((tiny_judge.model_dir / "student.json").read_text())
    examples, _ = label_examples(load_gold([sample_gold]).items, "gpt-4")
    parts = split(examples, val=0.2, test=0.25, seed=13)
    evidence = meta["validation_evidence"]
    assert len(evidence) == len(parts["val"])  # the plain validation split, one row per item
    assert {(r["kind"], r["reference"]) for r in evidence} == {(e.item["kind"], e.label) for e in parts["val"]}
    assert all(0.0 <= r["confidence"] <= 1.0 and r["reference_source"] == "teacher:gpt-4" for r in evidence)
    agree = sum(r["label"] == r["reference"] for r in evidence) / len(evidence)
    assert 0.65 < agree < 1.0  # the judge's own validation verdicts: not copies of the labels, not noise
    index = NoveltyIndex.load(tiny_judge.model_dir)
    assert len(index.matrix) == len(parts["train"]) == meta["novelty"]["indexed_items"]
    assert index.threshold == pytest.approx(meta["novelty"]["threshold"], abs=1e-5) and index.threshold > 0


def test_judge_is_order_invariant_and_keeps_input_order(tiny_judge, sample_gold):
    items = [i for i in load_gold([sample_gold]).items if i.kind == "pairwise"][:6]
    judge = Judge(tiny_judge.model_dir)
    rows = [{"kind": "pairwise", "criterion": i.criterion, "question": i.question, "answer_a": i.answer_a,
             "answer_b": i.answer_b, "reference": i.reference} for i in items]
    flipped = [dict(r, answer_a=r["answer_b"], answer_b=r["answer_a"]) for r in rows]
    out, back = judge.judge(rows), judge.judge(flipped)
    swap = {"A": "B", "B": "A", "tie": "tie"}
    for a, b in zip(out, back):
        assert b["label"] == swap[a["label"]]
        assert b["confidence"] == pytest.approx(a["confidence"], abs=1e-6)
        assert a["probs"][0] == pytest.approx(b["probs"][1], abs=1e-6)
    assert [fingerprint(r) for r in rows] == [fingerprint(i) for i in items]


def test_only_pointwise_items_embed_their_criterion(tiny_judge, sample_items):
    items = sample_items
    pair = next(i for i in items if i["kind"] == "pairwise")
    point = next(i for i in items if i["kind"] == "pointwise")
    judge = Judge(tiny_judge.model_dir)
    encoded: list[str] = []
    encode = judge.encoder.encode
    judge.encoder.encode = lambda texts: encoded.extend(texts) or encode(texts)
    first = judge.judge([dict(pair, criterion="a rubric of its own")])
    assert "a rubric of its own" not in encoded and pair["question"] in encoded  # the pairwise head never reads it
    assert judge.judge([dict(pair, criterion="another rubric")])[0]["probs"] == first[0]["probs"]
    judge.judge([dict(point, criterion="a pointwise rubric")])
    assert "a pointwise rubric" in encoded


def test_untrained_kind_and_missing_teacher_are_clear_errors(tmp_path, sample_gold):
    from judge_engine.training.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="--fallback-human"):
        train(TrainConfig(gold=(sample_gold,), out=tmp_path / "m", teacher="claude", progress=False),
              log=lambda *_: None)


def test_gzipped_teacher_set_several_teachers_soft_targets_and_a_second_run_from_the_cache(tmp_path, sample_gold):
    import gzip

    from judge_engine.training.trainer import TrainConfig, train

    rows = [json.loads(line) for line in sample_gold.read_text().splitlines() if '"pairwise"' in line]
    for i, row in enumerate(rows):  # half labelled by a second teacher, with a soft preference as AlpacaEval's
        if i % 2:
            label = row["teacher"].pop("gpt-4")
            row["teacher"]["gpt-4-turbo"] = label
            row["meta"] = {"teacher_prob_b": {"A": 0.1, "B": 0.9, "tie": 0.5}[label]}
    gz = tmp_path / "teacher.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    logs: list[str] = []
    cfg = TrainConfig(gold=(gz,), out=tmp_path / "m", teacher=("gpt-4", "gpt-4-turbo"), progress=False, epochs=30,
                      val_fraction=0.2, cache=tmp_path / "cache.sqlite")
    first = train(cfg, log=logs.append)
    meta = json.loads((first.model_dir / "student.json").read_text())
    assert meta["teachers"] == ["gpt-4", "gpt-4-turbo"] and meta["soft_targets"] > 0
    assert set(meta["label_sources"]) == {"teacher:gpt-4", "teacher:gpt-4-turbo"}
    assert first.test["pairwise"]["accuracy_vs_human"] > 0.8
    assert not any(" 0 newly encoded" in line for line in logs)
    logs.clear()
    torch.rand(5)  # whatever else the process did in between must not change what the same config trains
    second = train(cfg.__class__(**{**cfg.__dict__, "out": tmp_path / "m2"}), log=logs.append)
    assert any(" 0 newly encoded" in line for line in logs), logs
    assert second.test["pairwise"]["accuracy_vs_human"] == first.test["pairwise"]["accuracy_vs_human"]
    weights = [torch.load(m / "heads.pt", weights_only=True) for m in (first.model_dir, second.model_dir)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cross_encoder_reads_each_answer_with_its_question_fine_tunes_and_serves_order_invariant(tmp_path,
                                                                                                  sample_gold):
    import numpy as np

    from judge_engine.model.student import Encoder, joint, texts_of
    from judge_engine.training.trainer import TrainConfig, train

    rows = [r for r in map(json.loads, sample_gold.read_text().splitlines()) if r["kind"] == "pairwise"][:120]
    gold = tmp_path / "pairs.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    item = {**rows[0], "reference": None}
    assert joint(item["question"], item["answer_a"]) in texts_of(item, cross=True)
    assert item["answer_a"] not in texts_of(item, cross=True)
    encoder = Encoder(max_length=64)
    alone, together, other = encoder.encode([item["answer_a"], joint(item["question"], item["answer_a"]),
                                             joint("Something else entirely?", item["answer_a"])])
    assert not np.allclose(alone, together) and not np.allclose(together, other)  # the question is read too

    result = train(TrainConfig(gold=(gold,), out=tmp_path / "m", arch="cross", progress=False, epochs=30,
                               val_fraction=0.2, max_length=64, finetune_layers=1, finetune_epochs=1,
                               cache=tmp_path / "cache.sqlite"), log=lambda *_: None)
    meta = json.loads((result.model_dir / "student.json").read_text())
    assert meta["heads"]["arch"] == "cross" and meta["architecture"].startswith("minilm-cross")
    assert result.test["pairwise"]["accuracy_vs_human"] > 0.8
    judge = Judge(result.model_dir)
    pairs = [{k: r[k] for k in ("kind", "criterion", "question", "answer_a", "answer_b", "reference")}
             for r in rows[:6]]
    out = judge.judge(pairs)
    back = judge.judge([dict(p, answer_a=p["answer_b"], answer_b=p["answer_a"]) for p in pairs])
    for a, b in zip(out, back):
        assert b["label"] == {"A": "B", "B": "A", "tie": "tie"}[a["label"]]
        assert a["probs"][0] == pytest.approx(b["probs"][1], abs=1e-5)
    with pytest.raises(ValueError, match="--arch must be one of"):
        train(TrainConfig(gold=(gold,), out=tmp_path / "x", arch="triple", progress=False), log=lambda *_: None)


def test_in_process_novelty_is_relative_to_the_versions_own_threshold(tiny_judge, sample_gold):
    import random

    examples, _ = label_examples(load_gold([sample_gold]).items, "gpt-4")
    held_out = [e.item for e in split(examples, val=0.2, test=0.25, seed=13)["test"]]
    judge = Judge(tiny_judge.model_dir)
    same = [v["novelty"] for v in judge.judge(held_out)]
    rng = random.Random(0)
    noise = lambda n: " ".join("".join(rng.choice("qxzjkvw") for _ in range(7)) for _ in range(n))  # noqa: E731
    far = [{"kind": "pairwise", "criterion": "overall", "question": noise(12), "answer_a": noise(20),
            "answer_b": noise(25), "reference": None} for _ in range(20)]
    other = [v["novelty"] for v in judge.judge(far)]
    assert all(s > 0 for s in same) and sum(s > 1.0 for s in same) <= 0.1 * len(same)  # ~1 % by construction
    assert sum(s > 1.0 for s in other) >= 0.9 * len(other) and min(other) > max(sorted(same)[: len(same) // 2])
