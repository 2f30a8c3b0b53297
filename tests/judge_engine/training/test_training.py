"""`judgeline train` on the project's synthetic sample: learns, calibrates, keeps the test split out, saves."""

import json

import pytest

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


def test_untrained_kind_and_missing_teacher_are_clear_errors(tmp_path, sample_gold):
    from judge_engine.training.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="--fallback-human"):
        train(TrainConfig(gold=(sample_gold,), out=tmp_path / "m", teacher="claude", progress=False),
              log=lambda *_: None)
