"""The trained judge served by the real Triton server: exported, loaded, judged over gRPC, evaluated by the CLI.

What is served must be what was evaluated: the same verdicts as the in-process judge, the version in every
result, order invariance through the server, bad input refused as permanent, an absent server retried then given up.
"""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from judge_engine.clients.triton_client import TritonJudge, request_order
from judge_engine.dataset import item_dict, load_gold
from judge_engine.failures import GaveUp, JitteredWait, classify
from judge_engine.model.student import Judge
from judge_engine.training.export import export
from stack import triton

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(stack, tiny_judge):
    repo = Path(stack.stack.model_repository)
    target = export(tiny_judge.model_dir, repo, stack.triton.model_name)
    version = triton.load_model(stack, stack.triton.model_name)
    assert version == target.name
    return stack, version


def _judge(settings, items, **kw):
    async def run():
        async with TritonJudge(settings.triton, **kw) as client:
            return await client.judge(items)

    return asyncio.run(run())


def test_served_verdicts_equal_the_in_process_judge_and_carry_the_version(served, tiny_judge, sample_gold):
    settings, version = served
    items = load_gold([sample_gold]).items[:40] + load_gold([sample_gold]).items[-30:]  # both kinds
    results = _judge(settings, items, max_batch_size=16)  # several requests, merged again by the server
    local = Judge(tiny_judge.model_dir).judge([i.model_dump() for i in items])
    assert len(results) == len(items)
    for r, ref in zip(results, local):
        assert (r.label, r.model_version, r.model_name) == (ref["label"], version, "judge")
        assert r.confidence == pytest.approx(ref["confidence"], abs=1e-5)
        assert r.score == pytest.approx(ref["score"], abs=1e-5)
        assert sum(r.probs) == pytest.approx(1.0, abs=1e-5)
        assert r.novelty is not None and r.novelty == pytest.approx(ref["novelty"], abs=1e-4)  # the version's index


def test_a_batch_split_into_requests_is_grouped_by_text_and_answered_in_the_callers_order(served, sample_gold):
    settings, _ = served
    pairs = [i for i in load_gold([sample_gold]).items if i.kind == "pairwise"][:12]
    # each question three times, interleaved: a split in the caller's order would put no two of them together
    items = [pairs[q].model_copy(update={"answer_b": f"{pairs[q].answer_b} ({n})"}) for n in range(3)
             for q in range(len(pairs))]
    rows = [item_dict(i) for i in items]
    order = request_order(rows)
    assert sorted(order) == list(range(len(rows)))
    requests = [order[k:k + 6] for k in range(0, len(order), 6)]
    assert all(len({rows[i]["question"] for i in request}) <= 2 for request in requests)  # grouped by question
    grouped = _judge(settings, items, max_batch_size=6)
    one_by_one = [_judge(settings, [item])[0] for item in items]
    assert [r.label for r in grouped] == [r.label for r in one_by_one]  # each result back at its own item
    assert [r.confidence for r in grouped] == pytest.approx([r.confidence for r in one_by_one], abs=1e-5)


def test_pairwise_confidence_is_order_invariant_through_the_server(served, sample_gold):
    settings, _ = served
    pairs = [i for i in load_gold([sample_gold]).items if i.kind == "pairwise"][:10]
    flipped = [i.model_copy(update={"answer_a": i.answer_b, "answer_b": i.answer_a}) for i in pairs]
    swap = {"A": "B", "B": "A", "tie": "tie"}
    for a, b in zip(_judge(settings, pairs), _judge(settings, flipped)):
        assert b.label == swap[a.label] and b.confidence == pytest.approx(a.confidence, abs=1e-5)


def test_bad_input_is_a_permanent_error_naming_the_field(served):
    settings, _ = served
    bad = {"kind": "ranking", "criterion": "overall", "question": "q", "answer": "a", "reference": None}
    with pytest.raises(Exception) as err:
        _judge(settings, [bad])
    assert "KIND" in str(err.value) and classify(err.value) == "permanent"


def test_an_unreachable_triton_is_retried_then_given_up(served):
    settings, _ = served
    from stack.process import free_port

    dead = settings.triton.model_copy(update={"url": f"127.0.0.1:{free_port('127.0.0.1')}", "max_retries": 2,
                                              "timeout_s": 2.0})
    item = {"kind": "pointwise", "criterion": "c", "question": "q", "answer": "a", "reference": None}

    async def run():
        async with TritonJudge(dead, backoff=JitteredWait(initial_s=0.01, max_s=0.02)) as client:
            return await client.judge([item])

    with pytest.raises(GaveUp) as err:
        asyncio.run(run())
    assert err.value.attempts == 3 and classify(err.value.last) == "transient"


def _cli(settings, *args, env_extra=None):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("JUDGELINE_")}
    env.update({"JUDGELINE_STACK__STATE_DIR": str(settings.stack.state_dir),
                "JUDGELINE_STACK__MODEL_REPOSITORY": str(settings.stack.model_repository)})
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_eval_cli_writes_the_stable_report_and_never_scores_trained_items(served, sample_gold, tmp_path):
    settings, version = served
    out = tmp_path / "metrics.json"
    done = _cli(settings, "eval", "--gold", str(sample_gold), "--out", str(out), "--threshold", "0.8")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    for key in ("n", "accuracy_vs_human", "accuracy_vs_teacher", "macro_f1_vs_human", "kappa_vs_human",
                "swap_consistency", "ece", "judge_version", "cascade"):
        assert key in report
    total = len(load_gold([sample_gold]).items)
    assert report["judge_version"] == version and report["trained_items_checked"] is True
    assert 0 < report["n"] < total and report["n"] + report["excluded_trained"] == total
    assert 0.0 <= report["accuracy_vs_human"] <= 1.0 and 0.0 <= report["swap_consistency"] <= 1.0
    cascade = report["cascade"]
    assert [p["frontier_fraction"] for p in cascade] == sorted(p["frontier_fraction"] for p in cascade)
    assert cascade[0]["frontier_fraction"] == 0.0 and cascade[-1]["frontier_fraction"] == 1.0
    assert cascade[-1]["accuracy_vs_human"] == pytest.approx(report["teacher_accuracy_vs_human"])
    assert report["at_threshold"]["threshold"] == 0.8
    assert (tmp_path / "metrics.cascade.png").stat().st_size > 1000
    assert "accuracy vs human" in done.stdout and "cascade" in done.stdout
    b = report["bias"]
    assert set(b) == {"student", "teacher", "human"}
    for who in b.values():
        for meter in ("longer_wins", "first_wins", "accuracy_where_shorter_won"):
            assert who[meter]["rate"] is None or 0.0 <= who[meter]["rate"] <= 1.0
    assert b["student"]["first_wins"]["n"] > 0  # the one-order verdicts, from the served version's files
    assert b["human"]["accuracy_where_shorter_won"]["rate"] in (None, 1.0)
    assert "longer answer wins" in done.stdout


def test_eval_cli_names_bad_lines(served, sample_gold, tmp_path):
    settings, _ = served
    bad = tmp_path / "bad.jsonl"
    bad.write_text(sample_gold.read_text().splitlines()[0] + "\n{\"kind\": \"pairwise\"}\n")
    done = _cli(settings, "eval", "--gold", str(bad), "--out", str(tmp_path / "m.json"))
    assert done.returncode == 1 and "bad.jsonl:2" in done.stderr and "--skip-invalid" in done.stderr


def test_eval_policy_simulates_the_routing_controller_over_the_file(served, sample_gold, tmp_path):
    settings, version = served
    out = tmp_path / "policy.json"
    done = _cli(settings, "eval", "--gold", str(sample_gold), "--out", str(out), "--policy", "--update-every", "20")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    policy = report["policy"]
    for key in ("accuracy_vs_human", "frontier_fraction", "accepted_accuracy_vs_teacher", "accepted_accuracy_vs_human",
                "segments", "over_time", "alarms"):
        assert key in policy
    assert "cascade" in report and "accuracy_vs_human" in report  # the existing keys stay
    assert policy["n"] == report["n"] and sum(policy["route_reasons"].values()) == report["n"]
    assert policy["prior_evidence"] > 0  # started from the served version's own validation evidence
    assert policy["novelty_threshold"] > 0 and 0.0 <= policy["novel_fraction"] <= 1.0  # the version's own index
    assert policy["frontier_fraction"] == pytest.approx(1 - policy["accepted"] / policy["n"])
    assert policy["teacher_accuracy_vs_human"] == pytest.approx(report["teacher_accuracy_vs_human"])
    assert (tmp_path / "policy.policy.png").stat().st_size > 1000
    assert "routing policy" in done.stdout and "policy.png" in done.stdout
