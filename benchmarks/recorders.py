"""What watching costs: the inline stage's time per micro-batch with no recorder, with the Prometheus metrics, and
with the metrics plus OpenTelemetry evaluation events (exported to a local OTLP/HTTP receiver).

Contract:
- In process, no broker or store: ``InlineStage.process`` on batches of ``--batch`` valid traces with a judge that
  answers at once and a store and publisher that return at once, so the time measured is the stage's own work
  (validation, routing, verdicts, outbox) plus what the recorder adds. Every trace is routed (the default without a
  routing policy), so the events path emits one event per trace.
- ``--batches`` batches per configuration after ``--warmup``; the configurations are interleaved batch by batch so
  that a noisy neighbour affects each alike. Reports the median and p95 microseconds per batch and the median's
  ratio to the bare stage. Prints a Markdown table and writes ``bench-results/recorders.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from judge_engine.online.inline import ConstantJudge, InlineStage
from judge_engine.online.pipeline import NO_RECORDER, Incoming, Recorders
from schemas.settings import Settings
from schemas.trace import Trace

OUT = Path(__file__).resolve().parent.parent / "bench-results"
T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


class _Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's interface
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        return None


async def _nothing(_):
    return None


class _Store:
    write = staticmethod(_nothing)


def _batch(n: int, offset: int) -> list[Incoming]:
    out = []
    for i in range(n):
        trace = Trace(trace_id=f"{offset + i:032x}", span_id=f"{i + 1:016x}", kind="pointwise",
                      question=f"Which shoe fits a wide foot? #{i}", answer="The Wide Runner.", timestamp=T0)
        out.append(Incoming(value=trace.to_bytes(), key=None, topic="t", partition=0, offset=offset + i,
                            timestamp=T0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()

    from streams.evaluation_events import EvaluationEvents
    from streams.metrics import WorkerMetrics

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = Settings(otel={"evaluation_events": True, "endpoint": f"http://127.0.0.1:{server.server_address[1]}"})
    metrics = WorkerMetrics(settings, "inline")
    events = EvaluationEvents(settings, "inline")
    recorders = {"no recorder": NO_RECORDER, "prometheus metrics": WorkerMetrics(settings, "inline"),
                 "metrics + OTel events": Recorders(metrics, events)}
    stages = {name: InlineStage(settings, ConstantJudge(), _Store(), _nothing, recorder=r)
              for name, r in recorders.items()}
    batches = [_batch(args.batch, i * args.batch) for i in range(args.warmup + args.batches)]
    timings: dict[str, list[float]] = {name: [] for name in stages}

    async def run() -> None:
        for i, batch in enumerate(batches):
            for name, stage in stages.items():
                started = time.perf_counter()
                await stage.process(batch)
                if i >= args.warmup:
                    timings[name].append((time.perf_counter() - started) * 1e6)

    asyncio.run(run())
    events.close()
    server.shutdown()
    base = statistics.median(timings["no recorder"])
    rows = [{"configuration": name, "median_us_per_batch": round(statistics.median(t), 1),
             "p95_us_per_batch": round(sorted(t)[int(0.95 * len(t)) - 1], 1),
             "ratio_to_bare": round(statistics.median(t) / base, 3)} for name, t in timings.items()]
    result = {"batch": args.batch, "batches": args.batches, "warmup": args.warmup, "rows": rows}
    print(f"| configuration (batch {args.batch}, {args.batches} batches) | median us/batch | p95 us/batch | "
          "median / bare |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['configuration']} | {r['median_us_per_batch']} | {r['p95_us_per_batch']} | "
              f"{r['ratio_to_bare']} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "recorders.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
