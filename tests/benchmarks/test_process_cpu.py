"""benchmarks.process_cpu: CPU seconds of real processes over a wall-clock window (a busy child against an idle
one), and the interpolation between samples."""

import subprocess
import sys
import time

import pytest

from benchmarks.process_cpu import CpuSampler


def _spin(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"])


def test_a_busy_process_counts_about_one_core_and_an_idle_one_about_none():
    busy, idle = _spin(1.5), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    try:
        with CpuSampler(every_s=0.05) as sampler:
            sampler.add("busy", busy.pid)
            sampler.add("idle", idle.pid)
            start = time.time() + 0.2  # after the interpreters started
            time.sleep(1.1)
            end = time.time()
        window = sampler.window(start, end, traces=1000)
    finally:
        busy.wait(10), idle.wait(10)
    assert 0.6 <= window["busy"]["cores"] <= 1.1  # one thread spinning (2 shared cores: it may lose some)
    assert window["idle"]["cores"] < 0.1
    assert window["busy"]["us_per_trace"] == pytest.approx(1e6 * sampler.seconds("busy", start, end) / 1000, rel=0.01)
    assert window["machine"]["cores"] >= window["busy"]["cores"] - 0.15  # the machine holds at least the child
    assert window["machine"]["of_cores"] >= 1


def test_samples_are_interpolated_and_a_window_outside_them_is_refused():
    samples = [(10.0, 1.0), (12.0, 3.0), (14.0, 3.0)]
    assert CpuSampler._at(samples, 11.0) == pytest.approx(2.0)
    assert CpuSampler._at(samples, 13.0) == pytest.approx(3.0)
    assert CpuSampler._at(samples, 20.0) == 3.0  # gone: its last sample stands
    assert CpuSampler._at(samples, 5.0) == 1.0  # added later: counted from its first sample
    with CpuSampler(every_s=0.05) as sampler:
        time.sleep(0.1)
    with pytest.raises(ValueError, match="no CPU samples"):
        sampler.window(time.time() + 60, time.time() + 61, traces=10)
    at = time.time() - 0.05
    with pytest.raises(ValueError, match="empty window"):
        sampler.window(at, at, traces=10)
