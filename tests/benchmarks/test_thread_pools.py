"""The thread-pool benchmark compares what it says: each variant sets the judge's pools and tokenising as named,
the same batches are cut alike in every variant, and the judge keeps its own settings afterwards."""

import contextlib
import math

import pytest

from benchmarks.judge_variants import compare_variants
from benchmarks.thread_pools import VARIANTS, variants
from judge_engine.model.student import SERIAL_TEXTS, Judge
from judge_engine.model.thread_pools import Scoped

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def judge(tiny_judge):
    return Judge(tiny_judge.model_dir, threads=1)


def test_each_variant_sets_what_it_names_and_gives_the_settings_back(judge):
    seen = {}
    for name, variant in variants(judge).items():
        with variant():
            seen[name] = (isinstance(judge.pools, Scoped), judge.encoder.serial_texts)
    assert seen == {"before": (False, SERIAL_TEXTS), "serial": (False, math.inf),
                    "pools": (True, SERIAL_TEXTS), "now": (True, math.inf)}
    assert isinstance(judge.pools, Scoped) and judge.encoder.serial_texts == math.inf
    with pytest.raises(RuntimeError), variants(judge)["before"]():
        raise RuntimeError("a failed pass")
    assert isinstance(judge.pools, Scoped) and judge.encoder.serial_texts == math.inf


def test_every_variant_judges_the_same_batches_cut_alike(judge, sample_items):
    batches = [sample_items[:16], sample_items[16:32]]
    rows = compare_variants(judge, batches, variants(judge), rounds=2)
    assert list(rows) == list(VARIANTS) and rows["before"]["median_vs_first"] == 1.0
    assert len({(r["encoder_calls"], r["padding_share"]) for r in rows.values()}) == 1
    for r in rows.values():
        assert 0 < r["best_ms_per_item"] <= r["median_ms_per_item"] and r["gflops"] >= r["useful_gflops"] > 0


def test_a_variant_that_fails_to_set_up_stops_the_comparison(judge, sample_items):
    @contextlib.contextmanager
    def broken():
        raise ValueError("no such setting")
        yield

    with pytest.raises(ValueError, match="no such setting"):
        compare_variants(judge, [sample_items[:4]], {"ok": contextlib.nullcontext, "broken": broken}, rounds=1)
