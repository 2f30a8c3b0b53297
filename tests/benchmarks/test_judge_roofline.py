"""The roofline's arithmetic: FLOPs counted for the layers the judge really runs (a shallow ONNX version included),
and each pass paired with a sustained matmul rate measured beside it."""

import pytest
import torch

from benchmarks.judge_roofline import FlopCounter, roofline
from judge_engine.model.student import Judge
from judge_engine.training.export import prepare
from judge_engine.training.trainer import TrainConfig, train

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def torch_threads():
    """``roofline`` sets torch's thread count for the process; the tests after these keep the one they had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shallow_onnx(sample_gold, tmp_path_factory):
    root = tmp_path_factory.mktemp("roofline")
    cfg = TrainConfig(gold=(sample_gold,), out=root / "model", progress=False, epochs=5, val_fraction=0.2,
                      encoder_layers=2, cache=root / "cache.sqlite")
    return prepare(train(cfg, log=lambda *_: None).model_dir, root / "onnx", "onnx", "fp32")


def test_flops_are_counted_for_the_layers_the_version_runs(shallow_onnx, sample_items):
    judge = Judge(shallow_onnx)
    counter = FlopCounter(judge.encoder)
    h, i, length = 384, 1536, 10
    per_layer = 2 * length * (4 * h * h + 2 * h * i) + 2 * 2 * length * length * h
    assert counter.per_sequence(length) == 2 * per_layer  # two layers, not the package's six
    item = next(i for i in sample_items if i["kind"] == "pairwise")
    judge.judge([item])
    assert counter.tokens > 0 and counter.useful <= counter.flops
    counter.close()
    assert "embed_batch" not in vars(judge.encoder)


def test_each_pass_is_paired_with_a_sustained_matmul_rate(shallow_onnx, sample_items):
    judge = Judge(shallow_onnx, threads=1)
    items = sample_items[:8]
    r = roofline(judge, [items], threads=torch.get_num_threads(), peak_gflops=1.0, passes=2)
    assert r["items"] == 8 and r["gflop"] > 0 and r["sustained_peak_gflops"] > 0
    assert len(r["pass_seconds"]) == 2 and r["seconds"] == min(r["pass_seconds"])  # the best pass is the rate's
    assert r["fraction_of_peak"] == pytest.approx(r["gflops"], abs=0.06)  # against a 1 GFLOP/s "peak"
    assert 0 < r["fraction_of_sustained_peak"] < r["fraction_of_peak"]
    # each figure is rounded (GFLOP/s to 0.1, the share to 0.001), so compare them relatively
    assert r["useful_fraction_of_peak"] == pytest.approx(r["fraction_of_peak"] * (1 - r["padding_share"]), rel=0.005)
    # the encoder's batches are part of the pass, so its rate over their time alone is the higher one
    assert 0 < r["encoder_share_of_time"] < 1
    assert r["encoder_fraction_of_peak"] == pytest.approx(r["fraction_of_peak"] / r["encoder_share_of_time"],
                                                          rel=0.05)


def test_run_alone_on_an_onnx_directory_is_refused_naming_the_fix(shallow_onnx, monkeypatch, capsys):
    from benchmarks import judge_roofline

    monkeypatch.setattr("sys.argv", ["judge_roofline", "--model", str(shallow_onnx)])
    with pytest.raises(SystemExit) as exit_:
        judge_roofline.main()
    assert exit_.value.code == 2
    assert "serves its encoder on onnx; give the torch judge" in capsys.readouterr().err


def test_every_judge_is_measured_against_the_best_burst_of_the_run(shallow_onnx, sample_items, monkeypatch):
    """A peak measured in a slow minute would flatter the judges measured after it: the roofline is the best of
    the bursts measured before each judge and after the last."""
    from types import SimpleNamespace

    from benchmarks import judge, judge_roofline

    bursts = iter([100.0, 150.0, 120.0, 90.0])
    monkeypatch.setattr(judge_roofline, "matmul_peak_gflops", lambda threads: next(bursts))
    monkeypatch.setattr(judge, "_items", lambda n: sample_items[:n])
    local = Judge(shallow_onnx, threads=1)
    variants = {"onnx_fp32": local}
    monkeypatch.setattr(judge_roofline, "quantised", lambda j: j)  # an ONNX judge has no torch layers to quantise
    monkeypatch.setattr(judge_roofline, "held_out", lambda model: [])
    args = SimpleNamespace(threads=torch.get_num_threads(), roofline_batches=1, items_per_size=8)
    r = judge._roofline(local, shallow_onnx, args, variants)
    assert r["peak_measurements_gflops"] == [100.0, 150.0, 120.0, 90.0]  # before fp32, int8, onnx_fp32; after
    assert r["fp32_matmul_peak_gflops"] == 150.0
    for name in ("fp32", "int8", "onnx_fp32"):
        for size in ("batch_64", "batch_1"):
            m = r[name][size]
            assert m["fraction_of_peak"] == pytest.approx(m["gflops"] / 150.0, abs=1e-3)
            assert m["encoder_fraction_of_peak"] == pytest.approx(m["encoder_gflops"] / 150.0, abs=1e-3)
            assert m["useful_fraction_of_peak"] == pytest.approx(m["useful_gflops"] / 150.0, abs=1e-3)
