"""End-to-end pipeline benchmark: traces/s and produce-to-stored latency through the real broker, inline worker,
judge and ClickHouse store, with micro-batching, without it, and with a constant-time stub judge.

Contract:
- Starts its own embedded stack (broker, store, Triton) in a private state directory under ``bench-results/``,
  with a private model repository holding the judge (``--model``, else the newest exported version of
  ``triton_models/judge``, else one trained here as ``judgeline demo`` does), and stops it by PID at the end;
  touches no running stack.
- Four configurations (``--configs`` picks some), one after another, each with its own traces topic and consumer
  group and one
  ``judgeline worker inline`` process (routing by the default threshold and calibration sample, as before routing
  policies: ``routing.without_policy=threshold``; no frontier worker: this measures the inline layer):
  ``micro-batched`` (the real judge, ``stream.batch_size`` 32 within 50 ms), ``one trace per request`` (the real
  judge, batch size 1: the baseline without micro-batching) and ``stub judge`` (batch size 32, the judge replaced
  by ``ConstantJudge`` answering each call after ``--stub-ms``: the pipeline's own ceiling: Kafka, validation,
  routing, ClickHouse inserts, publishing, commits), and ``micro-batched, shadow candidate``: micro-batched with
  shadow mode on (docs/judge.md), the served judge also loaded as the shadow candidate (``judgeline shadow start``
  of the same files), so every batch is judged twice on the same Triton: the cost of shadowing a candidate
  (``shadow rows`` must equal the traces; the ratio to ``micro-batched`` is the figure to read).
- Each configuration runs two phases on PandaLM items (or the synthetic sample without ``../shared``): a *burst*
  (``--burst`` traces published at once: throughput = traces / (last stored - first produced); its latencies
  include the queue) and a *paced* phase (``--paced`` traces at ``--rate`` per second, below every
  configuration's capacity: latency of a trace that does not queue). Latency is ``stored_at - produced_at``
  (ClickHouse's insert time minus the Kafka message time), p50/p95 over the phase's verdicts.
- Prints a Markdown table and writes ``bench-results/pipeline.json``. One run on a shared machine: read ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from benchmarks import machine
from schemas import paths

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench-results"

CONFIGS = (  # (name, stream settings, judge: triton | stub | shadow)
    ("micro-batched", {"batch_size": 32, "batch_within_s": 0.05}, "triton"),
    ("one trace per request", {"batch_size": 1, "batch_within_s": 0.05}, "triton"),
    ("stub judge", {"batch_size": 32, "batch_within_s": 0.05}, "stub"),
    ("micro-batched, shadow candidate", {"batch_size": 32, "batch_within_s": 0.05}, "shadow"),
)


def _model_repository(work: Path, model: str | None) -> Path:
    from judge_engine.training.export import export, versions

    repo = work / "models"
    shutil.rmtree(repo, ignore_errors=True)
    if model:
        export(Path(model), repo, "judge")
        return repo
    source = paths.TRITON_TEMPLATE
    found = versions(source)
    if found:
        shutil.copytree(source / str(found[-1]), repo / "judge" / "1")
        shutil.copy2(source / "config.pbtxt", repo / "judge" / "config.pbtxt")
    return repo  # empty: ensure_judge trains one


def _phase(settings, gold: Path, name: str, stub_ms: float | None, n: int, rate: float | None, log) -> dict:
    from operations import demo

    run = demo.Run(demo.new_run_id("bench"), settings, gold)
    try:
        demo.start_processes(run, with_frontier=False, stub_judge_ms=stub_ms, log=lambda *_: None)
        demo.publish(run, limit=n, rate=rate, malformed=0)
        store = demo.Store(run)
        if not demo.wait_done(run, store, with_frontier=False, timeout_s=1200, log=log, every_s=30):
            raise RuntimeError(f"{name}: not every trace was stored within 20 minutes")
        m = demo.pipeline_metrics(run, store)
        shadow_rows = store.one("SELECT count() FROM {db}.shadow_verdicts FINAL WHERE tenant = {{t:String}}")
    finally:
        demo.stop_processes(run)
    return {"traces": m["verdicts"], "throughput_traces_per_s": round(m["throughput_traces_per_s"], 1),
            "latency_ms_p50": m["latency_ms_p50"], "latency_ms_p95": m["latency_ms_p95"],
            "offered_rate": rate or "burst", "shadow_rows": shadow_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="trained judge directory (default: the newest exported, else train one)")
    parser.add_argument("--burst", type=int, default=320, help="traces published at once per configuration")
    parser.add_argument("--paced", type=int, default=60, help="traces published at --rate per configuration")
    parser.add_argument("--rate", type=float, default=4.0, help="traces/s of the paced phase")
    parser.add_argument("--stub-ms", type=float, default=1.0, help="the stub judge's time per call")
    parser.add_argument("--configs", nargs="+", choices=[c[0] for c in CONFIGS], default=[c[0] for c in CONFIGS],
                        metavar="NAME", help=f"configurations to run (default all: {', '.join(c[0] for c in CONFIGS)})")
    args = parser.parse_args()

    from operations import demo
    from schemas.settings import Settings
    from stack import services as stack
    from stack.topics import ensure_topics

    OUT.mkdir(exist_ok=True)
    work = OUT / ".pipeline-bench"
    shutil.rmtree(work / "state", ignore_errors=True)
    repo = _model_repository(work, args.model)
    base = Settings(stack={"state_dir": work / "state", "model_repository": repo},
                    routing={"without_policy": "threshold"})
    gold = demo.default_gold(base)
    rows = []
    started = time.monotonic()
    try:
        stack.up(base, log=lambda *_: None)
        settings = stack.effective_settings(base)
        version = demo.ensure_judge(settings, log=print)
        for i, (name, stream, judge) in enumerate(CONFIGS):
            if name not in args.configs:
                continue
            topics = settings.kafka.topics.model_copy(update={"traces": f"judgeline.traces.bench-{i}"})
            cfg = settings.model_copy(update={
                "stream": settings.stream.model_copy(update=stream),
                "kafka": settings.kafka.model_copy(update={"topics": topics, "consumer_group": f"bench-inline-{i}"}),
            })
            if judge == "shadow":
                from operations import shadow

                candidate = shadow.start(settings, repo / settings.triton.model_name / version, log=lambda *_: None)
                cfg = cfg.model_copy(update={"shadow": cfg.shadow.model_copy(update={"version": "latest"})})
            ensure_topics(cfg)
            stub_ms = args.stub_ms if judge == "stub" else None
            row = {"configuration": name, "batch_size": stream["batch_size"],
                   "judge": {"stub": f"constant stub ({args.stub_ms:g} ms per call)",
                             "shadow": f"Triton judge v{version} + the same files as shadow candidate "
                                       f"v{candidate.version if judge == 'shadow' else ''}"}.get(
                                 judge, f"Triton judge v{version}")}
            row["burst"] = _phase(cfg, gold, name, stub_ms, args.burst, None, print)
            row["paced"] = _phase(cfg, gold, name, stub_ms, args.paced, args.rate, print)
            rows.append(row)
            b, p = row["burst"], row["paced"]
            print(f"{name:<22} burst of {b['traces']}: {b['throughput_traces_per_s']:7.1f} traces/s, p50 "
                  f"{b['latency_ms_p50']:.0f} ms, p95 {b['latency_ms_p95']:.0f} ms | paced {args.rate:g}/s: p50 "
                  f"{p['latency_ms_p50']:.0f} ms, p95 {p['latency_ms_p95']:.0f} ms | shadow rows "
                  f"{b['shadow_rows'] + p['shadow_rows']}", flush=True)
    finally:
        stack.down(base, log=lambda *_: None)
    result = {
        "benchmark": "pipeline",
        "machine": machine.describe(),
        "gold": str(gold),
        "seconds": round(time.monotonic() - started),
        "rows": rows,
    }
    (OUT / "pipeline.json").write_text(json.dumps(result, indent=2))
    print("\n| configuration | judge | burst traces/s | burst p50 ms | burst p95 ms | paced p50 ms | paced p95 ms | "
          "shadow rows |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, p = r["burst"], r["paced"]
        print(f"| {r['configuration']} (batch {r['batch_size']}) | {r['judge']} | {b['throughput_traces_per_s']} | "
              f"{b['latency_ms_p50']:.0f} | {b['latency_ms_p95']:.0f} | {p['latency_ms_p50']:.0f} | "
              f"{p['latency_ms_p95']:.0f} | {b['shadow_rows'] + p['shadow_rows']} |")
    print(f"\n(paced: {args.paced} traces at {args.rate:g}/s; burst: {args.burst} at once)\nwrote {OUT / 'pipeline.json'}")


if __name__ == "__main__":
    main()
