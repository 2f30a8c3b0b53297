"""Faust's own ceiling on this machine: how fast one worker process can take trace messages from Kafka and
acknowledge them when it does nothing else with them. The inline worker's rate cannot exceed it.

Contract:
- ``measure(settings, messages, log, sampler)`` publishes ``messages`` (key, value) to a fresh topic of its own
  (``settings.kafka.topics.partitions`` partitions) on the running broker, then starts one consumer process
  (``python -m benchmarks.faust_ceiling --consume N``, the settings in its environment as a worker gets them) and
  waits for it (``timeout_s``); the process is stopped by PID if it overruns.
- The consumer is a Faust app built by ``streams.app.create_app(settings, "inline")`` (the inline worker's Faust
  configuration: fetch wait, commit interval, stream buffer) with one agent on that topic that takes events in
  micro-batches of ``stream.batch_size`` within ``stream.batch_within_s`` (``take_events``, as the inline agent)
  and holds and acknowledges each batch (``streams.app.hold_references``/``acknowledge``): nothing parsed, judged,
  stored or published. After N events it prints one line, ``CEILING {json}`` (events, seconds, the epoch times of its
  first and last batch, events per second from the end of the first batch to the end of the last, so start-up and
  group join are left out), and exits.
- ``sampler`` (``benchmarks.process_cpu.CpuSampler``) gets the consumer as role ``worker``; the returned row has
  the CPU window of those seconds (``cpu``) beside ``throughput_traces_per_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(settings, messages: list[tuple[bytes, bytes]], log=print, sampler=None, timeout_s: float = 300) -> dict:
    from operations.produce import produce
    from stack import process
    from stack.topics import ensure_topics
    from stack.workers import settings_env

    run = f"ceiling-{time.time_ns()}"
    topics = settings.kafka.topics.model_copy(update={"traces": f"judgeline.traces.{run}"})
    cfg = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topics": topics,
                                                                                  "consumer_group": run})})
    ensure_topics(cfg)
    result = produce(cfg, messages, timeout_s=300)
    if result.failed:
        raise RuntimeError(f"Faust ceiling: {result.failed} messages not delivered: {result.first_error}")
    port = process.free_port(cfg.stack.bind_host)
    env = {**settings_env(cfg), "JUDGELINE_STREAM__WORKER_WEB_PORT": str(port),
           "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}
    record = process.start(run, [sys.executable, "-m", "benchmarks.faust_ceiling", "--consume", str(len(messages))],
                           cfg.state_dir, env=env, cwd=cfg.state_dir, ports={"web": port})
    try:
        if sampler is not None:
            sampler.add("worker", record.pid)
        deadline = time.monotonic() + timeout_s
        line = None
        while line is None and time.monotonic() < deadline:
            time.sleep(0.2)
            with open(record.log, errors="replace") as f:
                line = next((x for x in f if x.startswith("CEILING ")), None)
            if line is None and not process.is_running(record):
                break
        if line is None:
            raise RuntimeError(f"Faust ceiling: no result within {timeout_s:.0f} s; see {record.log}")
    finally:
        process.stop(record)
    out = json.loads(line[len("CEILING "):])
    row = {"run": "Faust alone (take and acknowledge)", "workers": 1, "traces": out["events"],
           "offered_per_s": "burst", "stored_span_s": out["seconds"],
           "throughput_traces_per_s": out["events_per_s"]}
    if sampler is not None:
        row["cpu"] = sampler.window(out["first_batch_at"], out["last_batch_at"], out["counted"])
    log(f"{row['run']:<36} {out['events']} messages: {row['throughput_traces_per_s']} messages/s")
    return row


def _consume(n: int) -> None:
    from schemas.settings import Settings
    from streams.app import acknowledge, create_app, hold_references, register_agent, run, source_topic

    settings = Settings()
    app = create_app(settings, "inline")

    async def ceiling(stream):
        seen, first_at, first_size = 0, None, 0
        async for events in stream.take_events(settings.stream.batch_size, within=settings.stream.batch_within_s):
            hold_references(events)
            acknowledge(events)
            seen += len(events)
            now = time.time()
            if first_at is None:
                first_at, first_size = now, len(events)
            if seen >= n:
                counted = seen - first_size
                print("CEILING " + json.dumps({
                    "events": seen, "counted": counted, "first_batch_at": first_at, "last_batch_at": now,
                    "seconds": round(now - first_at, 3),
                    "events_per_s": round(counted / (now - first_at), 1) if now > first_at else None}), flush=True)
                os._exit(0)  # a benchmark's consumer: nothing to shut down cleanly

    register_agent(app, source_topic(app, settings.kafka.topics.traces), "faust-ceiling", ceiling)
    run(app, settings)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--consume", type=int, required=True, help="events to take before reporting")
    _consume(parser.parse_args().consume)
