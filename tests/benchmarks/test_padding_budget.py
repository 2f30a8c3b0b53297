"""The padding-budget benchmark compares what it says: each budget's own cuts, timed in turns, the judge left as
it was."""

import pytest

from benchmarks.padding_budget import compare
from judge_engine.model.student import PADDING_BUDGET, Judge

pytestmark = pytest.mark.filterwarnings("ignore")


def test_each_budget_is_measured_with_its_own_cuts_and_the_judge_keeps_its_budget(tiny_judge, sample_items):
    judge = Judge(tiny_judge.model_dir, threads=1)
    batches = [sample_items[:16], sample_items[16:32]]
    rows = compare(judge, batches, budgets=[10.0, 0.0], rounds=2)
    loose, tight = rows["10.0"], rows["0.0"]
    assert tight["padding_share"] == 0.0 < loose["padding_share"]  # no budget: only equal lengths share a batch
    assert tight["encoder_calls"] > loose["encoder_calls"]
    assert loose["median_vs_first"] == 1.0 and tight["median_vs_first"] > 0
    assert tight["gflops"] == tight["useful_gflops"] > 0  # nothing padded: every FLOP was needed
    assert loose["useful_gflops"] < loose["gflops"]
    for r in rows.values():
        assert 0 < r["best_ms_per_item"] <= r["median_ms_per_item"]
    assert judge.encoder.padding_budget == PADDING_BUDGET
    assert "embed_batch" not in vars(judge.encoder)  # the call counter is gone
