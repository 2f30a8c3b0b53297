"""Soak benchmark (`make soak`): traces at a fixed rate for several minutes through the whole real pipeline, with
throughput, consumer lag over time, memory growth of the workers and the counts check.

Contract:
- Starts its own embedded stack (broker, store, Triton) in a private state directory under ``bench-results/``, with
  the judge of ``benchmarks.pipeline`` (``--model``, else the newest exported version, else one trained as
  ``judgeline demo`` does), the replay frontier and the two workers as processes (``operations.demo.start_processes``),
  and stops everything by PID at the end; touches no running stack.
- Publishes gold items as traces (PandaLM, or the synthetic sample without ``../shared``; cycled with a per-cycle id
  prefix so every trace id is new) at ``--rate`` per second for ``--minutes``, one malformed message every
  ``--malformed-every`` traces, then waits (at most ``--drain-s``) until every message has a verdict or a dead
  letter and every routed trace a frontier verdict.
- Every ``--sample-s`` seconds it records: messages produced and stored, the inline group's lag (end offsets from
  the producer's delivery reports, minus the group's committed offsets: the embedded broker's high watermark is
  wrong), the frontier backlog (routed verdicts without a frontier verdict yet), and the resident memory (RSS) of
  the worker processes, the replay frontier, the store server and Triton.
- Reports throughput (verdicts over the produce-to-stored span, and the offered rate achieved), produce-to-stored
  latency p50/p95, lag (max, mean, at the end of publishing, after the drain), memory per process (first and last
  sample, peak, least-squares slope in MB/min over the publishing phase after the first minute) and the counts
  check: every trace exactly one verdict, every malformed message exactly one dead letter (after FINAL), nothing
  unaccounted. Prints a table and writes ``bench-results/soak.json`` (with every sample). Exit status 1 when the
  counts check fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from benchmarks import machine

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench-results"


def _rss_kb(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float | None:
    """Resident memory of the process group ``pid`` leads (every service here starts in a session of its own, so
    Triton's python-backend stubs count with the server), None once it is gone."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # the process group
            total += _rss_kb(stat.parent.name)
    return total / 1024 if total else None


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return None if var == 0 else 60 * sum((t - mx) * (v - my) for t, v in points) / var


def messages(run, gold: Path, stop_at: float, malformed_every: int, counts: dict):
    """Traces cycled from the gold file (new ids each cycle) with a malformed message every ``malformed_every``."""
    from operations.produce import malformed_messages, traces_from_gold

    items = [t for _, t in traces_from_gold(gold, tenant=run.tenant) if not isinstance(t, Exception)]
    for cycle in itertools.count():
        for trace in items:
            if time.monotonic() >= stop_at:
                return
            trace = trace.model_copy(update={"trace_id": f"c{cycle}-{trace.trace_id}"})
            counts["traces"] += 1
            yield trace.trace_id.encode(), trace.to_bytes()
            if malformed_every and counts["traces"] % malformed_every == 0:
                counts["malformed"] += 1
                yield malformed_messages(1, f"{run.prefix}{counts['malformed']}-")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long traces are published")
    parser.add_argument("--rate", type=float, default=5.0, help="traces per second")
    parser.add_argument("--malformed-every", type=int, default=200, help="one malformed message per N traces (0: none)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples of lag and memory")
    parser.add_argument("--drain-s", type=float, default=600.0, help="longest wait for the backlog after publishing")
    parser.add_argument("--model", help="trained judge directory (default: the newest exported, else train one)")
    parser.add_argument("--stub-ms", type=float, default=None,
                        help="replace the Triton judge by the constant stub answering after this many ms")
    args = parser.parse_args()

    from benchmarks.pipeline import _model_repository
    from operations import demo
    from operations.lag import committed_offsets
    from operations.produce import produce
    from schemas.settings import Settings
    from stack import services as stack

    OUT.mkdir(exist_ok=True)
    work = OUT / ".soak"
    shutil.rmtree(work / "state", ignore_errors=True)
    repo = _model_repository(work, args.model)
    base = Settings(stack={"state_dir": work / "state", "model_repository": repo},
                    frontier={"budget_usd": 1e6, "rate_limit_rps": 100})
    gold = demo.default_gold(base)
    samples: list[dict] = []
    started = time.monotonic()
    try:
        stack.up(base, log=lambda *_: None)
        settings = stack.effective_settings(base)
        version = demo.ensure_judge(settings, log=print) if args.stub_ms is None else f"stub {args.stub_ms:g} ms"
        run = demo.Run(demo.new_run_id("soak"), settings, gold)
        demo.start_processes(run, stub_judge_ms=args.stub_ms, log=print)
        services = {r.name: r.pid for r in stack.read_records(settings).values() if r.name != "broker"}
        pids = {**{p.name.split("-soak-")[0]: p.pid for p in run.processes}, **services}
        store = demo.Store(run)
        counts = {"traces": 0, "malformed": 0}
        end_offsets: dict[int, int] = {}
        lock = threading.Lock()

        def delivered(partition: int, offset: int) -> None:
            with lock:
                end_offsets[partition] = max(end_offsets.get(partition, 0), offset + 1)

        publish_s = args.minutes * 60
        print(f"soak: {args.rate:g} traces/s for {args.minutes:g} min through the real pipeline (judge {version}); "
              f"sampling every {args.sample_s:g} s", flush=True)
        result: dict = {}
        t0 = time.monotonic()
        producer = threading.Thread(target=lambda: result.update(r=produce(
            run.settings, messages(run, gold, t0 + publish_s, args.malformed_every, counts), rate=args.rate,
            timeout_s=120, on_delivery=delivered)), daemon=True)
        producer.start()

        def sample(phase: str) -> dict:
            p = store.progress()
            committed = committed_offsets(run.settings, run.settings.kafka.consumer_group,
                                          run.settings.kafka.topics.traces)
            with lock:
                ends = dict(end_offsets)
            s = {"t_s": round(time.monotonic() - t0, 1), "phase": phase, "load_1m": os.getloadavg()[0],
                 "produced": sum(ends.values()),
                 "stored": p["verdicts"] + p["dead_letters"],
                 "inline_lag": sum(max(0, e - (committed.get(part) or 0)) for part, e in ends.items()),
                 "frontier_backlog": max(0, p["routed"] - p["frontier_verdicts"]),
                 "rss_mb": {name: rss_mb(pid) for name, pid in pids.items()}}
            samples.append(s)
            return s

        def show(s: dict) -> None:
            rss = ", ".join(f"{k} {v:.0f}" for k, v in s["rss_mb"].items() if v is not None)
            print(f"  t={s['t_s']:6.0f} s  produced {s['produced']:6d}  stored {s['stored']:6d}  inline lag "
                  f"{s['inline_lag']:5d}  frontier backlog {s['frontier_backlog']:5d}  RSS MB: {rss}", flush=True)

        next_at = t0
        while producer.is_alive():
            next_at += args.sample_s
            time.sleep(max(0.0, next_at - time.monotonic()))
            s = sample("publishing")
            if len(samples) % max(1, round(30 / args.sample_s)) == 0:
                show(s)
        producer.join()
        published_s = time.monotonic() - t0
        produced = result["r"]
        if produced.failed:
            raise RuntimeError(f"{produced.failed} messages were not delivered: {produced.first_error}")
        run.produced_traces, run.produced_malformed = counts["traces"], counts["malformed"]
        run.produce_seconds = produced.seconds
        end_of_publishing = sample("publishing")
        show(end_of_publishing)
        drained = demo.wait_done(run, store, timeout_s=args.drain_s, log=print, every_s=30)
        show(sample("drained" if drained else "drain timed out"))
        metrics = demo.pipeline_metrics(run, store)
        dup_verdicts = store.one("SELECT count() FROM (SELECT trace_id FROM {db}.verdicts FINAL "
                                 "WHERE tenant = {{t:String}} GROUP BY trace_id HAVING count() > 1)")
        dup_letters = store.one("SELECT count() FROM (SELECT key FROM {db}.dead_letters FINAL WHERE "
                                "startsWith(ifNull(key, ''), {{p:String}}) GROUP BY key HAVING count() > 1)")
        frontier_status = dict(store.rows("SELECT status, count() FROM {db}.frontier_verdicts FINAL "
                                          "WHERE tenant = {{t:String}} GROUP BY status ORDER BY status"))
    finally:
        if "run" in locals():
            demo.stop_processes(run)
        stack.down(base, log=lambda *_: None)

    publishing = [s for s in samples if s["phase"] == "publishing"]
    lags = [s["inline_lag"] for s in publishing]
    memory = {}
    for name in pids:
        series = [(s["t_s"], s["rss_mb"][name]) for s in publishing if s["rss_mb"].get(name) is not None]
        warm = [p for p in series if p[0] >= 60] or series
        if series:
            memory[name] = {"first_mb": round(series[0][1], 1), "last_mb": round(series[-1][1], 1),
                            "peak_mb": round(max(v for _, v in series), 1),
                            "slope_mb_per_min": None if slope_per_min(warm) is None else round(slope_per_min(warm), 2)}
    counts_ok = (metrics["verdicts"] == run.produced_traces and metrics["dead_letters"] == run.produced_malformed
                 and dup_verdicts == 0 and dup_letters == 0)
    report = {
        "benchmark": "soak",
        "machine": machine.describe(),
        "gold": str(gold), "judge": version, "offered_rate": args.rate, "minutes": args.minutes,
        "seconds": round(time.monotonic() - started),
        "published": {"traces": run.produced_traces, "malformed": run.produced_malformed,
                      "seconds": round(published_s, 1),
                      "achieved_rate": round(run.produced_traces / run.produce_seconds, 2)},
        "throughput_traces_per_s": metrics["throughput_traces_per_s"] and round(metrics["throughput_traces_per_s"], 2),
        "latency_ms_p50": metrics["latency_ms_p50"], "latency_ms_p95": metrics["latency_ms_p95"],
        "load_1m_mean": round(sum(s["load_1m"] for s in samples) / len(samples), 1),
        "inline_lag": {"max": max(lags, default=0), "mean": round(sum(lags) / len(lags), 1) if lags else 0,
                       "end_of_publishing": end_of_publishing["inline_lag"], "after_drain": samples[-1]["inline_lag"]},
        "frontier_backlog": {"max": max((s["frontier_backlog"] for s in publishing), default=0),
                             "end_of_publishing": end_of_publishing["frontier_backlog"],
                             "after_drain": samples[-1]["frontier_backlog"]},
        "frontier_status": frontier_status,
        "memory": memory,
        "counts": {"verdicts": metrics["verdicts"], "dead_letters": metrics["dead_letters"],
                   "traces_with_two_verdicts": dup_verdicts, "malformed_with_two_dead_letters": dup_letters,
                   "drained": drained, "ok": counts_ok and drained},
        "samples": samples,
    }
    (OUT / "soak.json").write_text(json.dumps(report, indent=2))
    print(_table(report))
    print(f"\nwrote {OUT / 'soak.json'}")
    sys.exit(0 if report["counts"]["ok"] else 1)


def _table(r: dict) -> str:
    c, lag, fb = r["counts"], r["inline_lag"], r["frontier_backlog"]
    lines = [
        "", f"| soak: {r['minutes']:g} min at {r['offered_rate']:g} traces/s, judge {r['judge']} | |", "|---|---|",
        f"| published | {r['published']['traces']} traces + {r['published']['malformed']} malformed in "
        f"{r['published']['seconds']} s ({r['published']['achieved_rate']} traces/s achieved) |",
        f"| throughput | {r['throughput_traces_per_s']} traces/s stored |",
        f"| machine load (1-min load average, mean of the samples; {r['machine']['cpus']} cores) | "
        f"{r['load_1m_mean']} |",
        f"| produce -> stored latency | p50 {r['latency_ms_p50']:.0f} ms, p95 {r['latency_ms_p95']:.0f} ms |",
        f"| inline lag (messages) | max {lag['max']}, mean {lag['mean']}, end of publishing {lag['end_of_publishing']}, "
        f"after drain {lag['after_drain']} |",
        f"| frontier backlog (traces) | max {fb['max']}, end of publishing {fb['end_of_publishing']}, "
        f"after drain {fb['after_drain']} |",
        f"| frontier verdicts | {', '.join(f'{k} {v}' for k, v in r['frontier_status'].items())} |",
    ]
    for name, m in r["memory"].items():
        lines.append(f"| RSS {name} | {m['first_mb']} -> {m['last_mb']} MB (peak {m['peak_mb']}), slope after the "
                     f"first minute {m['slope_mb_per_min']} MB/min |")
    lines.append(f"| counts check | {c['verdicts']} verdicts + {c['dead_letters']} dead letters for "
                 f"{r['published']['traces']} + {r['published']['malformed']} messages; "
                 f"{c['traces_with_two_verdicts']} traces with two verdicts; drained {c['drained']}: "
                 f"{'OK' if c['ok'] else 'FAILED'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
