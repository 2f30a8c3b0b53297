"""A consumer's own ceiling on this machine: how fast one process can take trace messages from Kafka and
acknowledge them when it does nothing else with them. No inline worker can be faster than its consumer.

Contract:
- ``measure(settings, messages, log, sampler, consumer)`` publishes ``messages`` (key, value) to a fresh topic of
  its own (``settings.kafka.topics.partitions`` partitions) on the running broker, then starts one consumer process
  (``python -m benchmarks.consumer_ceiling --consume N --consumer C``, the settings in its environment as a worker
  gets them) and waits for it (``timeout_s``); the process is stopped by PID if it overruns.
- ``consumer="librdkafka"``: confluent-kafka's consumer in the inline worker's group role, taking up to
  ``stream.batch_size`` messages per ``consume`` call (a list built in C) within ``stream.batch_within_s``, and
  committing each batch's offsets asynchronously after it: the ceiling of the inline worker as built
  (``stream.consumer`` librdkafka, ``streams.batch_consumer``).
- ``consumer="faust"``: a Faust app built by ``streams.app.create_app(settings, "inline")`` (the Faust configuration:
  fetch wait, commit interval, stream buffer) with one agent on that topic that takes events in micro-batches of
  ``stream.batch_size`` within ``stream.batch_within_s`` (``take_events``) and holds and acknowledges each batch
  (``streams.app.hold_references``/``acknowledge``): the ceiling of a worker consuming through Faust's per-event
  stream (``stream.consumer`` faust). Nothing parsed, judged, stored or published in either.
- Either prints one line after N messages, ``CEILING {json}`` (events, seconds, the epoch times of its first and
  last batch, events per second from the end of the first batch to the end of the last, so start-up and group join
  are left out), and exits.
- ``sampler`` (``benchmarks.process_cpu.CpuSampler``) gets the consumer as role ``worker``; the returned row has
  the CPU window of those seconds (``cpu``) beside ``throughput_traces_per_s``, its ``worker`` entry from the
  consumer's own ``time.process_time()`` over the window (reported in the ``CEILING`` line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


RUNS = {"faust": "Faust alone (take and acknowledge)", "librdkafka": "librdkafka alone (take and acknowledge)"}


def measure(settings, messages: list[tuple[bytes, bytes]], log=print, sampler=None, timeout_s: float = 300,
            consumer: str = "faust") -> dict:
    from operations.produce import produce
    from stack import process
    from stack.topics import ensure_topics
    from stack.workers import settings_env

    if consumer not in RUNS:
        raise ValueError(f"consumer must be one of {', '.join(RUNS)} (got {consumer!r})")
    run = f"ceiling-{consumer}-{time.time_ns()}"
    topics = settings.kafka.topics.model_copy(update={"traces": f"judgeline.traces.{run}"})
    cfg = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topics": topics,
                                                                                  "consumer_group": run})})
    ensure_topics(cfg)
    result = produce(cfg, messages, timeout_s=300)
    if result.failed:
        raise RuntimeError(f"consumer ceiling: {result.failed} messages not delivered: {result.first_error}")
    port = process.free_port(cfg.stack.bind_host)
    env = {**settings_env(cfg), "JUDGELINE_STREAM__WORKER_WEB_PORT": str(port),
           "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.consumer_ceiling", "--consume", str(len(messages)),
               "--consumer", consumer]
    record = process.start(run, command, cfg.state_dir, env=env, cwd=cfg.state_dir, ports={"web": port})
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
            raise RuntimeError(f"{RUNS[consumer]}: no result within {timeout_s:.0f} s; see {record.log}")
    finally:
        process.stop(record)
    out = json.loads(line[len("CEILING "):])
    row = {"run": RUNS[consumer], "workers": 1, "traces": out["events"],
           "offered_per_s": "burst", "stored_span_s": out["seconds"],
           "throughput_traces_per_s": out["events_per_s"]}
    if sampler is not None:
        row["cpu"] = cpu = sampler.window(out["first_batch_at"], out["last_batch_at"], out["counted"])
        # the consumer's own CPU over its window (all its threads: process_time), exact where sampling is coarse
        # (the librdkafka consumer's window is a fraction of a second)
        span = out["last_batch_at"] - out["first_batch_at"]
        cpu["worker"] = {"cores": round(out["cpu_s"] / span, 2) if span > 0 else None,
                         "us_per_trace": round(1e6 * out["cpu_s"] / max(1, out["counted"]), 1)}
    log(f"{row['run']:<36} {out['events']} messages: {row['throughput_traces_per_s']} messages/s")
    return row


class _Tally:
    """Counts the batches a consumer takes; after ``n`` messages prints the ``CEILING`` line and ends the process."""

    def __init__(self, n: int):
        self.n, self.seen, self.first_at, self.first_size, self.first_cpu = n, 0, None, 0, 0.0

    def batch(self, size: int) -> None:
        self.seen += size
        now = time.time()
        if self.first_at is None:
            self.first_at, self.first_size, self.first_cpu = now, size, time.process_time()
        if self.seen < self.n:
            return
        counted, seconds = self.seen - self.first_size, now - self.first_at
        print("CEILING " + json.dumps({
            "events": self.seen, "counted": counted, "first_batch_at": self.first_at, "last_batch_at": now,
            "cpu_s": time.process_time() - self.first_cpu, "seconds": round(seconds, 3),
            "events_per_s": round(counted / seconds, 1) if seconds > 0 else None}), flush=True)
        os._exit(0)  # a benchmark's consumer: nothing to shut down cleanly


def _consume_faust(settings, n: int) -> None:
    from streams.app import (
        acknowledge,
        create_app,
        hold_references,
        register_agent,
        run,
        source_topic,
    )

    app = create_app(settings, "inline")
    tally = _Tally(n)

    async def ceiling(stream):
        async for events in stream.take_events(settings.stream.batch_size, within=settings.stream.batch_within_s):
            hold_references(events)
            acknowledge(events)
            tally.batch(len(events))

    register_agent(app, source_topic(app, settings.kafka.topics.traces), "consumer-ceiling", ceiling)
    run(app, settings)


def _consume_librdkafka(settings, n: int) -> None:
    from confluent_kafka import Consumer

    consumer = Consumer({**settings.kafka.client_config(), "group.id": settings.kafka.consumer_group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.kafka.topics.traces])
    tally = _Tally(n)
    while True:
        batch = [m for m in consumer.consume(settings.stream.batch_size, timeout=settings.stream.batch_within_s)
                 if m.error() is None]
        if batch:
            consumer.commit(asynchronous=True)  # after the batch, as a worker commits what it stored
            tally.batch(len(batch))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--consume", type=int, required=True, help="events to take before reporting")
    parser.add_argument("--consumer", choices=sorted(RUNS), default="faust")
    args = parser.parse_args()
    from schemas.settings import Settings

    consume = {"faust": _consume_faust, "librdkafka": _consume_librdkafka}
    consume[args.consumer](Settings(), args.consume)
