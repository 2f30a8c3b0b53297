"""``benchmarks.goals``: issue 13's verdicts read off one run's judge.json and throughput.json."""

from __future__ import annotations

import json
import os
import time

import pytest

from benchmarks import goals

MACHINE = {"cpus": 2, "platform": "Linux", "model": "AMD EPYC (family 25, model 17)", "simd": "avx512+vnni",
           "load_average": [1.0, 1.0, 1.0]}


def _throughput(one=6_400.0, traces=40_000, ratio=1.65, cores=1.65, p95=195.0):
    return {"machine": MACHINE, "two_workers_ratio": ratio, "two_workers_ratio_cores_estimate": cores, "rows": [
        {"run": "burst, 1 worker", "traces": traces, "throughput_traces_per_s": one},
        {"run": "burst, 2 workers", "traces": traces, "throughput_traces_per_s": one * ratio},
        {"run": "paced at half the ceiling", "offered_per_s": one / 2, "latency_ms_p95": p95},
    ]}


def _judge(fraction=0.857, fp32_items=136.4, int8_items=276.4, fp32_points=0.0, int8_points=0.89, p50=13.8):
    return {"machine": MACHINE,
            "runtime_rows": [
                {"variant": "onnx_fp32", "batch_size": 1, "triton": {"p50_ms": p50 * 2}, "in_process": {"p50_ms": 20}},
                {"variant": "onnx_int8", "batch_size": 1, "triton": {"p50_ms": p50}, "in_process": {"p50_ms": 13.0}},
            ],
            "roofline": {
                "fp32_matmul_peak_gflops": 199.8, "peak_measurements_gflops": [183.5, 199.8, 191.2, 102.6, 190.0],
                "onnx_fp32": {"batch_64": {"gflops": round(fraction * 199.8, 1),
                                           "fraction_of_peak": fraction, "fraction_of_sustained_peak": 0.921,
                                           "sustained_peak_gflops": 180.2, "items_per_s": fp32_items,
                                           "useful_fraction_of_peak": 0.797, "padding_share": 0.07}},
                "onnx_int8": {"batch_64": {"items_per_s": int8_items}},
                "held_out": {"items": 336, "onnx_fp32": {"change_points": fp32_points},
                             "onnx_int8": {"change_points": int8_points}},
            }}


def _verdicts(judge=None, throughput=None) -> list[str]:
    return [g["verdict"] for g in goals.evaluate(judge or _judge(), throughput or _throughput())]


def test_a_run_that_meets_every_goal_reads_met_on_every_row():
    rows = goals.evaluate(_judge(), _throughput(ratio=1.94, cores=1.65))
    assert [g["verdict"] for g in rows] == ["met"] * 6
    assert rows[3]["value"] == 0.857 and "0.921 of the rate sustained" in rows[3]["measured"]
    assert "without its padding (7% of the FLOPs) 0.797" in rows[3]["measured"]
    assert "(171.2 of 199.8 GFLOP/s; the part's bursts 102.6-199.8)" in rows[3]["measured"]
    assert rows[4]["value"] == pytest.approx(276.4 / 136.4)
    assert "0.50 of the 1-worker ceiling" in rows[2]["measured"]


@pytest.mark.parametrize("judge, throughput, row, verdict", [
    (None, _throughput(one=4_999.0), 0, "not met"),
    (None, _throughput(traces=5_000), 0, "not measured"),  # benchmarks.throughput --quick
    (None, _throughput(ratio=1.55, cores=1.65), 1, "cores allow less"),
    (None, _throughput(ratio=1.55, cores=1.90), 1, "not met"),
    (None, _throughput(ratio=1.20, cores=1.65), 1, "not met"),  # far under what the cores would carry
    (None, _throughput(p95=1_001.0), 2, "not met"),
    (_judge(fraction=0.785), None, 3, "not met"),
    (_judge(int8_items=130.0), None, 4, "not met"),  # int8 slower than fp32
    (_judge(fp32_points=0.5, int8_points=-0.6), None, 4, "not met"),  # 1.1 points lost against fp32
    (_judge(fp32_points=0.5, int8_points=-0.4), None, 4, "met"),  # 0.9 points lost
    (_judge(p50=30.5), None, 5, "not met"),
])
def test_each_goal_turns_on_its_own_figure(judge, throughput, row, verdict):
    verdicts = _verdicts(judge, throughput)
    assert verdicts[row] == verdict
    assert all(v in ("met", "cores allow less") for i, v in enumerate(verdicts) if i != row)


def _write(out, judge=None, throughput=None):
    out.mkdir(exist_ok=True)
    (out / "judge.json").write_text(json.dumps(judge or _judge()))
    (out / "throughput.json").write_text(json.dumps(throughput or _throughput()))


def test_main_prints_the_table_and_writes_goals_json(tmp_path, capsys):
    _write(tmp_path)
    assert goals.main(["--out", str(tmp_path), "--since", str(time.time() - 60)]) == 0
    printed = capsys.readouterr().out
    assert "| judge in process (ONNX Runtime fp32, batch 64) against the fp32 matmul peak | >= 0.8 |" in printed
    assert "AMD EPYC (family 25, model 17) (avx512+vnni)" in printed
    written = json.loads((tmp_path / "goals.json").read_text())
    assert [g["verdict"] for g in written["goals"]] == _verdicts()
    assert written["machine"]["simd"] == "avx512+vnni"


def test_a_file_from_an_earlier_run_is_refused_naming_it(tmp_path, capsys):
    _write(tmp_path)
    old = time.time() - 3_600
    os.utime(tmp_path / "judge.json", (old, old))
    assert goals.main(["--out", str(tmp_path), "--since", str(time.time() - 60)]) == 2
    err = capsys.readouterr().err
    assert "judge.json was written before this run started" in err and "make bench" in err
    assert not (tmp_path / "goals.json").exists()


def test_a_missing_file_or_figure_is_named_with_the_fix(tmp_path, capsys):
    _write(tmp_path)
    (tmp_path / "throughput.json").unlink()
    assert goals.main(["--out", str(tmp_path)]) == 2
    assert "throughput.json is missing: run `make bench`" in capsys.readouterr().err

    judge = _judge()
    del judge["roofline"]["onnx_fp32"]
    _write(tmp_path, judge=judge)
    assert goals.main(["--out", str(tmp_path)]) == 2
    assert "judge.json has no roofline.onnx_fp32.batch_64" in capsys.readouterr().err

    for bursts in (None, []):  # an older judge.json, or one whose peak part measured nothing
        judge = _judge()
        judge["roofline"]["peak_measurements_gflops"] = bursts
        if bursts is None:
            del judge["roofline"]["peak_measurements_gflops"]
        _write(tmp_path, judge=judge)
        assert goals.main(["--out", str(tmp_path)]) == 2
        assert "judge.json has no roofline.peak_measurements_gflops" in capsys.readouterr().err


def test_a_truncated_file_is_named_not_a_traceback(tmp_path, capsys):
    _write(tmp_path)
    (tmp_path / "judge.json").write_text('{"roofline": {')
    assert goals.main(["--out", str(tmp_path)]) == 2
    assert "judge.json is not JSON" in capsys.readouterr().err
