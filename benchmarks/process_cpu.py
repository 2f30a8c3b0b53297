"""CPU time of the processes a benchmark runs, over a window of wall-clock time: where a pipeline's cores go.

Contract:
- ``CpuSampler(every_s)`` is a context manager; ``add(role, pid)`` puts a process and the processes it has started
  by then under a role ("worker", "broker", "store", ...; a role may hold several processes) at any time, and a background thread samples every process's
  cumulative CPU seconds (user + system, all its threads; ``psutil``) and the machine's busy CPU seconds (every
  core, every process: what else ran) every ``every_s`` seconds, stamped with ``time.time()``.
- ``seconds(role, start, end)`` is the CPU seconds the role's processes spent between two wall-clock times (epoch
  seconds, e.g. the first and last ``stored_at`` of a run), interpolated linearly between the samples around each
  end; a process gone before ``end`` counts what it had spent, one added after ``start`` counts from its first
  sample. ``machine_seconds(start, end)`` the same for the
  whole machine. A window that ended after the last sample gets a sample taken then; one with no sample before
  its start, or one that ends in the future, is an error.
- ``window(start, end, traces)`` is the summary a benchmark row carries: per role, cores busy on average
  (``cores``) and CPU microseconds per trace (``us_per_trace``), plus ``machine`` (all cores, every process) and
  ``other`` (the machine less the roles: the benchmark's own process, anything else on the machine).
"""

from __future__ import annotations

import bisect
import threading
import time

import psutil


class CpuSampler:
    def __init__(self, every_s: float = 0.1):
        self.every_s = every_s
        self._processes: dict[int, tuple[str, psutil.Process]] = {}
        self._samples: dict[int, list[tuple[float, float]]] = {}  # pid -> [(wall time, cumulative cpu s)]
        self._machine: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def add(self, role: str, pid: int) -> None:
        """Put ``pid`` and every process it has started by now (a launcher's server) under ``role``."""
        parent = psutil.Process(pid)
        with self._lock:
            for proc in (parent, *parent.children(recursive=True)):
                self._processes[proc.pid] = (role, proc)
                self._samples.setdefault(proc.pid, [])
        self._sample()

    def __enter__(self) -> "CpuSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def _sample(self) -> None:
        now = time.time()
        busy = psutil.cpu_times()
        with self._lock:
            self._machine.append((now, busy.user + busy.system + busy.nice + busy.irq + busy.softirq + busy.steal))
            for pid, (_, proc) in self._processes.items():
                try:
                    t = proc.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue  # gone: its last sample stands
                self._samples[pid].append((now, t.user + t.system))

    @staticmethod
    def _at(samples: list[tuple[float, float]], when: float) -> float:
        if not samples:
            return 0.0
        times = [t for t, _ in samples]
        i = bisect.bisect_left(times, when)
        if i == 0:  # before the process's first sample (added later): count from that sample on
            return samples[0][1]
        if i == len(samples):
            return samples[-1][1]
        (t0, c0), (t1, c1) = samples[i - 1], samples[i]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1

    def _check(self, start: float, end: float) -> None:
        if self._machine and self._machine[-1][0] < end <= time.time():
            self._sample()  # the window ended after the last periodic sample: take the one after it now
        with self._lock:
            first, last = (self._machine[0][0], self._machine[-1][0]) if self._machine else (None, None)
        if first is None or first > start or last < end:
            raise ValueError(f"no CPU samples around the window {start:.3f}..{end:.3f} (sampled {first}..{last})")

    def seconds(self, role: str, start: float, end: float) -> float:
        self._check(start, end)
        with self._lock:
            pids = [pid for pid, (r, _) in self._processes.items() if r == role]
            return sum(self._at(self._samples[p], end) - self._at(self._samples[p], start) for p in pids)

    def machine_seconds(self, start: float, end: float) -> float:
        self._check(start, end)
        with self._lock:
            return self._at(self._machine, end) - self._at(self._machine, start)

    def window(self, start: float, end: float, traces: int) -> dict:
        span = end - start
        if span <= 0 or traces <= 0:
            raise ValueError(f"an empty window ({span:.3f} s, {traces} traces)")
        with self._lock:
            roles = sorted({r for r, _ in self._processes.values()})
        out: dict = {}
        spent = 0.0
        for role in roles:
            cpu = self.seconds(role, start, end)
            spent += cpu
            out[role] = {"cores": round(cpu / span, 2), "us_per_trace": round(1e6 * cpu / traces, 1)}
        machine = self.machine_seconds(start, end)
        out["other"] = {"cores": round(max(0.0, machine - spent) / span, 2),
                        "us_per_trace": round(1e6 * max(0.0, machine - spent) / traces, 1)}
        out["machine"] = {"cores": round(machine / span, 2), "us_per_trace": round(1e6 * machine / traces, 1),
                          "of_cores": psutil.cpu_count()}
        return out
