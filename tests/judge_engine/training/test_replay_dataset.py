"""The pure part of replay: label precedence, deduplication, augmentation, and rows that are valid gold items."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from judge_engine.dataset import fingerprint, label_examples, load_gold
from judge_engine.training.replay_dataset import (
    GoldIndex,
    Replayed,
    build_dataset,
    frontier_index,
)
from schemas.gold import read_gold_file
from schemas.trace import Trace
from schemas.verdict import FrontierVerdict

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def pair(tid, a="Paris.", b="Rome.", q="Capital of France?", ref=None, **kw):
    return Trace(trace_id=tid, kind="pairwise", question=q, answer_a=a, answer_b=b, reference=ref, **kw)


def point(tid, answer="Paris.", q="Capital of France?", **kw):
    return Trace(trace_id=tid, kind="pointwise", criterion="hallucination", question=q, answer=answer, **kw)


def at(trace, offset, partition=0):
    return Replayed(trace, "traces", partition, offset, T0 + timedelta(seconds=offset))


def fv(trace, label, status="ok", judged=0, judge="gpt-4", **kw):
    return FrontierVerdict(trace_id=trace.trace_id, kind=trace.kind, criterion=trace.criterion, judge_name=judge,
                           status=status, label=label if status == "ok" else None, request_reason="low_confidence",
                           trace_time=T0, judged_at=T0 + timedelta(seconds=judged), **kw)


def gold_row(trace, label, gid=None):
    d = trace.model_dump()
    return {"id": gid or trace.trace_id, "kind": d["kind"], "criterion": d["criterion"], "question": d["question"],
            "answer": d["answer"], "answer_a": d["answer_a"], "answer_b": d["answer_b"], "human_label": label}


def by_id(ds):
    return {r.id: r for r in ds.rows}


def test_frontier_beats_gold_beats_the_trace_itself_and_unlabelled_traces_are_counted():
    t1, t2, t3, t4 = pair("t1"), pair("t2", q="Capital of Italy?"), point("t3"), point("t4", answer="Lyon.")
    t3 = t3.model_copy(update={"metadata": {"human_label": "fail"}})
    frontier = frontier_index([fv(t1, "B")])
    gold = GoldIndex([gold_row(t1, "A"), gold_row(t2, "tie")])
    ds = build_dataset([at(t1, 0), at(t2, 1), at(t3, 2), at(t4, 3)], frontier, gold)
    rows = by_id(ds)
    assert set(rows) == {"t1", "t2", "t3"}
    assert (rows["t1"].teacher, rows["t1"].human_label, rows["t1"].meta["label_source"]) == ({"gpt-4": "B"}, "A",
                                                                                            "frontier:gpt-4")
    assert (rows["t2"].teacher, rows["t2"].human_label, rows["t2"].meta["label_source"]) == ({}, "tie", "gold")
    assert (rows["t3"].human_label, rows["t3"].meta["label_source"]) == ("fail", "trace")
    assert ds.counts["unlabelled"] == 1 and ds.counts["labelled"] == 3 and ds.counts["written"] == 3
    assert ds.label_sources == {"frontier:gpt-4": 1, "gold": 1, "trace": 1}


def test_only_ok_frontier_verdicts_count_and_the_latest_wins():
    t = pair("t1")
    index = frontier_index([fv(t, "A", judged=1), fv(t, "B", judged=5), fv(t, None, status="budget_exhausted",
                                                                            judged=9)])
    assert index["t1"].label == "B"
    assert frontier_index([fv(t, None, status="unparseable")]) == {}
    ds = build_dataset([at(t, 0)], frontier_index([fv(t, None, status="retries_exhausted")]), GoldIndex())
    assert ds.rows == [] and ds.counts["unlabelled"] == 1


def test_a_verdict_for_another_criterion_is_not_this_traces_label():
    t = point("t1")
    other = FrontierVerdict(trace_id="t1", kind="pointwise", criterion="helpfulness", judge_name="gpt-4", label="pass",
                            request_reason="low_confidence", trace_time=T0)
    assert build_dataset([at(t, 0)], frontier_index([other]), GoldIndex()).counts["unlabelled"] == 1


def test_gold_matched_by_content_with_answers_in_the_other_order_has_its_label_swapped():
    t = pair("run1-x", a="Paris.", b="Rome.")
    shown_swapped = pair("x", a="Rome.", b="Paris.")
    ds = build_dataset([at(t, 0)], {}, GoldIndex([gold_row(shown_swapped, "B")]))
    row = ds.rows[0]
    assert (row.human_label, row.meta["gold_id"]) == ("A", "x")
    # the row whose id is the trace id wins among rows with the same content
    ds = build_dataset([at(t, 0)], {}, GoldIndex([gold_row(t, "tie", gid="a-other"), gold_row(t, "B", gid="run1-x")]))
    assert ds.rows[0].human_label == "B"


def test_duplicates_by_trace_id_keep_the_first_read_and_by_content_keep_the_best_label():
    t = pair("t1")
    same_content = pair("t9")
    frontier = frontier_index([fv(same_content, "A")])
    traces = [at(t, 5, partition=1), at(t, 2, partition=1), at(same_content, 7)]
    ds = build_dataset(traces, frontier, GoldIndex([gold_row(t, "B")]))
    assert ds.counts["duplicate_trace_id"] == 1 and ds.counts["duplicate_content"] == 1
    assert [r.id for r in ds.rows] == ["t9"] and ds.rows[0].meta["label_source"] == "frontier:gpt-4"
    # every trace read is counted exactly once
    assert sum(ds.counts[k] for k in ("duplicate_trace_id", "duplicate_content", "unlabelled", "labelled")) == 3
    # equal label sources: the earliest stays
    ds = build_dataset([at(pair("late"), 9), at(pair("early"), 1)], {}, GoldIndex([gold_row(t, "A")]))
    assert [r.id for r in ds.rows] == ["early"] and ds.rows[0].meta["offset"] == 1


def test_swap_adds_the_other_order_with_every_label_swapped():
    t = pair("t1", a="Paris.", b="Rome.")
    verdict = fv(t, "A", label_swapped="B")
    ds = build_dataset([at(t, 0)], frontier_index([verdict]), GoldIndex([gold_row(t, "A")]), swap=True)
    rows = by_id(ds)
    assert set(rows) == {"t1", "t1#swap"} and ds.counts["augmented"] == 1
    s = rows["t1#swap"]
    assert (s.answer_a, s.answer_b) == ("Rome.", "Paris.")
    assert (s.teacher, s.teacher_swapped, s.human_label, s.meta["label"]) == ({"gpt-4": "B"}, {"gpt-4": "A"}, "B", "B")
    assert fingerprint(s) == fingerprint(rows["t1"])  # the same item: a split by question keeps them together
    # pointwise rows and pairs with identical answers gain nothing from a swap
    same = pair("t2", a="Paris.", b="Paris.", q="Other?")
    ds = build_dataset([at(point("p"), 0), at(same, 1)], {}, GoldIndex([gold_row(point("p"), "pass"),
                                                                        gold_row(same, "tie")]), swap=True)
    assert sorted(r.id for r in ds.rows) == ["p", "t2"]


def test_reference_drop_adds_a_copy_without_reference_for_a_deterministic_fraction():
    traces = [pair(f"t{i}", q=f"Q{i}?", ref="Paris is the capital.") for i in range(200)]
    gold = GoldIndex([gold_row(t, "A") for t in traces])
    ds = build_dataset([at(t, i) for i, t in enumerate(traces)], {}, gold, reference_drop=0.3)
    dropped = [r for r in ds.rows if r.id.endswith("#noref")]
    assert 40 <= len(dropped) <= 80  # about 30 % of 200
    assert all(r.reference is None and r.meta["augmentation"] == "noref" for r in dropped)
    again = build_dataset([at(t, i) for i, t in enumerate(traces)], {}, gold, reference_drop=0.3)
    assert [r.id for r in again.rows] == [r.id for r in ds.rows]
    all_of_them = build_dataset([at(t, i) for i, t in enumerate(traces)], {}, gold, reference_drop=1.0, swap=True)
    assert len(all_of_them.rows) == 800  # each: plain, #noref, #swap, #swap#noref
    with pytest.raises(ValueError, match="reference_drop"):
        build_dataset([], {}, gold, reference_drop=1.5)


def test_rows_are_a_valid_gold_file_that_training_labels_with_the_same_precedence(tmp_path):
    t1, t2, t3 = pair("t1"), point("t2"), pair("t3", q="Capital of Spain?", a="Madrid.", b="Rome.")
    ds = build_dataset([at(t1, 0), at(t2, 1), at(t3, 2)], frontier_index([fv(t1, "tie")]),
                       GoldIndex([gold_row(t1, "B"), gold_row(t2, "fail"), gold_row(t3, "A")]), swap=True)
    path = tmp_path / "replayed.jsonl"
    path.write_text("".join(r.model_dump_json(exclude_none=True) + "\n" for r in ds.rows))
    parsed = [item for _, item in read_gold_file(path)]
    assert all(not isinstance(p, Exception) for p in parsed) and len(parsed) == len(ds.rows) == 5
    assert len({p.id for p in parsed}) == 5
    examples, _ = label_examples(load_gold([path]).items, teacher="gpt-4", fallback_human=True)
    assert {e.source_id: (e.label, e.label_source) for e in examples} == {
        "t1": ("tie", "teacher:gpt-4"), "t1#swap": ("tie", "teacher:gpt-4"), "t2": ("fail", "human"),
        "t3": ("A", "human"), "t3#swap": ("B", "human")}
    assert json.loads(path.read_text().splitlines()[0])["meta"]["label"] == "tie"


def test_a_long_trace_id_keeps_variant_ids_within_the_limit():
    t = pair("x" * 128)
    ds = build_dataset([at(t, 0)], {}, GoldIndex([gold_row(t, "A")]), swap=True)
    assert len({r.id for r in ds.rows}) == 2 and all(len(r.id) <= 128 for r in ds.rows)
