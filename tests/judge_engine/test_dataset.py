"""Training data: teacher labels, grouped split, swap augmentation, reference drop, bad lines reported."""

import json

import pytest

from judge_engine import dataset


def _item(i, question="q?", label="A", teacher="B", reference=None, kind="pairwise"):
    base = {"id": f"x{i}", "source": "t", "kind": kind, "question": question, "reference": reference,
            "human_label": label, "teacher": {"gpt-4": teacher} if teacher else {}}
    if kind == "pairwise":
        return {**base, "answer_a": f"first {i}", "answer_b": f"second {i}"}
    return {**base, "answer": f"answer {i}", "criterion": "hallucination"}


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_bad_lines_are_listed_with_line_and_field(tmp_path):
    path = _write(tmp_path / "g.jsonl", [_item(1), "{not json", json.dumps({**_item(3), "human_label": "pass"})])
    with pytest.raises(dataset.GoldFileError) as err:
        dataset.load_gold([path])
    text = str(err.value)
    assert "g.jsonl:2" in text and "g.jsonl:3" in text and "human_label" in text and "--skip-invalid" in text
    loaded = dataset.load_gold([path], skip_invalid=True)
    assert len(loaded.items) == 1 and [n for _, n, _ in loaded.invalid] == [2, 3]


def test_teacher_label_with_human_fallback_only_when_asked(tmp_path):
    items = dataset.load_gold([_write(tmp_path / "g.jsonl", [_item(1, teacher="B"), _item(2, teacher=None)])]).items
    examples, report = dataset.label_examples(items, "gpt-4")
    assert [(e.source_id, e.label, e.label_source) for e in examples] == [("x1", "B", "teacher:gpt-4")]
    assert sum(report.skipped.values()) == 1
    examples, _ = dataset.label_examples(items, "gpt-4", fallback_human=True)
    assert [(e.label, e.label_source) for e in examples] == [("B", "teacher:gpt-4"), ("A", "human")]
    examples, _ = dataset.label_examples(items, "human")
    assert [e.label for e in examples] == ["A", "A"]


def test_split_is_deterministic_and_keeps_each_question_in_one_part(tmp_path):
    rows = [_item(i, question=f"question {i % 40}") for i in range(400)]
    items = dataset.load_gold([_write(tmp_path / "g.jsonl", rows)]).items
    examples, _ = dataset.label_examples(items, "gpt-4")
    parts = dataset.split(examples, val=0.2, test=0.3, seed=1)
    assert parts == dataset.split(examples, val=0.2, test=0.3, seed=1)
    questions = {name: {e.item["question"] for e in rows} for name, rows in parts.items()}
    assert not (questions["train"] & questions["test"]) and not (questions["train"] & questions["val"])
    assert 0.1 < len(parts["test"]) / 400 < 0.5 and len(parts["train"]) > 0
    with pytest.raises(ValueError, match="sum to less than 1"):
        dataset.split(examples, val=0.5, test=0.5)


def test_augment_swaps_pairs_and_drops_references(tmp_path):
    rows = [_item(1, teacher="A", reference="ref"), _item(2, kind="pointwise", label="pass", teacher="fail")]
    items = dataset.load_gold([_write(tmp_path / "g.jsonl", rows)]).items
    examples, _ = dataset.label_examples(items, "gpt-4")
    out = dataset.augment(examples)
    pairs = [e for e in out if e.item["kind"] == "pairwise"]
    assert len(pairs) == 4  # with and without reference, each in both orders
    swapped = [e for e in pairs if e.item["answer_a"] == "second 1"]
    assert {e.label for e in swapped} == {"B"} and {e.human_label for e in swapped} == {"B"}
    assert sorted(bool(e.item["reference"]) for e in pairs) == [False, False, True, True]
    points = [e for e in out if e.item["kind"] == "pointwise"]
    assert len(points) == 1  # no reference to drop, nothing to swap
    assert dataset.augment(examples, swap=False, reference_drop=False) == examples


def test_fingerprint_ignores_answer_order_and_id():
    a = _item(1)
    b = {**a, "id": "other", "answer_a": a["answer_b"], "answer_b": a["answer_a"]}
    assert dataset.fingerprint(a) == dataset.fingerprint(b)
    assert dataset.fingerprint(a) != dataset.fingerprint({**a, "question": "another?"})


def _write_gz(path, rows):
    import gzip

    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_gzipped_files_stream_and_sample_per_file_is_seeded(tmp_path):
    rows = [_item(i, question=f"q{i}") for i in range(200)]
    gz = _write_gz(tmp_path / "g.jsonl.gz", rows)
    seen = []
    assert [it.id for it in dataset.load_gold([gz], progress=seen.append).items] == [r["id"] for r in rows]
    assert sum(seen) == 200
    a = dataset.load_gold([gz], sample_per_file=30, seed=1).items
    assert len(a) == 30 and len({it.id for it in a}) == 30
    assert [it.id for it in a] == [it.id for it in dataset.load_gold([gz], sample_per_file=30, seed=1).items]
    assert {it.id for it in a} != {it.id for it in dataset.load_gold([gz], sample_per_file=30, seed=2).items}
    assert {it.id for it in a} != {r["id"] for r in rows[:30]}  # a random sample, not the head of the file
    (tmp_path / "cut.jsonl.gz").write_bytes(gz.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.jsonl.gz cannot be read"):
        dataset.load_gold([tmp_path / "cut.jsonl.gz"])


def test_several_teachers_in_order_of_preference_and_soft_targets(tmp_path):
    rows = [
        {**_item(1), "teacher": {"gpt-4": "A", "gpt-4-turbo": "B"}},
        {**_item(2), "teacher": {"gpt-4-turbo": "B"}, "meta": {"teacher_prob_b": 0.8}},
        {**_item(3), "teacher": {"gpt-4-turbo": "tie"}, "meta": {"teacher_prob_b": 0.5}},
        {**_item(4), "teacher": {"other": "A"}},
    ]
    items = dataset.load_gold([_write(tmp_path / "g.jsonl", rows)]).items
    examples, report = dataset.label_examples(items, ["gpt-4", "gpt-4-turbo"])
    assert [(e.source_id, e.label, e.label_source) for e in examples] == [
        ("x1", "A", "teacher:gpt-4"), ("x2", "B", "teacher:gpt-4-turbo"), ("x3", "tie", "teacher:gpt-4-turbo")]
    assert "no gpt-4 / gpt-4-turbo verdict" in next(iter(report.skipped))
    assert report.soft == 1
    assert [e.target for e in examples] == [(1.0, 0.0, 0.0), (pytest.approx(0.2), 0.8, 0.0), (0.0, 0.0, 1.0)]
    flipped = dataset.swapped(examples[1])
    assert flipped.label == "A" and flipped.target == (0.8, pytest.approx(0.2), 0.0)
    with pytest.raises(ValueError, match="cannot be combined"):
        dataset.label_examples(items, ["human", "gpt-4"])


def test_length_balance_keeps_as_many_longer_wins_as_shorter_wins(tmp_path):
    def pair(i, winner, a_words, b_words):
        return {**_item(i, teacher=winner, question=f"q{i}"), "answer_a": "w " * a_words, "answer_b": "w " * b_words}

    rows = [pair(i, "A", 9, 2) for i in range(30)]  # longer won
    rows += [pair(100 + i, "B", 9, 2) for i in range(5)]  # shorter won
    rows += [pair(200, "tie", 9, 2), pair(201, "A", 3, 3)]  # a tie, equal lengths
    items = dataset.load_gold([_write(tmp_path / "g.jsonl", rows)]).items
    examples, _ = dataset.label_examples(items, "gpt-4")
    kept, counts = dataset.length_balance(examples, seed=3)
    assert counts == {"shorter_won": 5, "longer_won": 30, "longer_won_kept": 5, "other": 2, "kept": 12}
    assert sum(e.label == "A" and e.item["answer_a"].count("w") == 9 for e in kept) == 5
    assert {"x200", "x201"} <= {e.source_id for e in kept}
    assert kept == dataset.length_balance(examples, seed=3)[0]
