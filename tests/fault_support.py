"""Helpers of the fault suite (``tests/faults``): pipeline runs on the private fault stack, outages, SIGKILL.

- ``FaultRun``: one pipeline run on the private stack with topics, consumer groups and a ClickHouse database of its
  own; it starts ``judgeline worker`` processes and the replay frontier, publishes traces, waits, and checks the
  stored rows (``assert_each_once``: every trace exactly one verdict, every malformed message exactly one dead
  letter, after FINAL). ``stop()`` stops every process it started, by PID, and drops its databases.
- ``outage(settings, service)``: a context manager that stops a service of the private stack and makes sure it is
  running again when the block ends (``restore()`` restarts it earlier, at the same ports).
- ``kill(record)``: SIGKILL a process the test started, and reap it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from doubles import frontier_replay
from operations.produce import malformed_messages, produce
from schemas.settings import Settings
from stack import process
from stack import services as stack_mod
from stack.migrate import migrate
from stack.topics import ensure_topics
from stack.workers import start_worker, wait_until, wait_worker_ready
from streams.clickhouse import connect

QUIET = dict(log=lambda *_: None)


class Outage:
    def __init__(self, settings: Settings, service: str):
        self.settings, self.service = settings, service
        self.restored = False

    def stop(self) -> None:
        record = stack_mod.running_service(self.settings, self.service)
        assert record is not None, f"{self.service} is not running"
        process.stop(record)

    def restore(self) -> None:
        if not self.restored:
            stack_mod.up(self.settings, only=(self.service,), **QUIET)
            self.restored = True


@contextlib.contextmanager
def outage(settings: Settings, service: str):
    o = Outage(settings, service)
    o.stop()
    try:
        yield o
    finally:
        o.restore()


def kill(record: process.ServiceRecord) -> None:
    """SIGKILL a process this test started (and its group), and reap it."""
    assert process.is_running(record), f"{record.name} is not running"
    os.killpg(record.pid, signal.SIGKILL)
    assert wait_until(lambda: (process.stop(record, grace_s=0) or True) and not process.is_running(record), 10)


def log_text(record: process.ServiceRecord) -> str:
    return Path(record.log).read_text(errors="replace")


@dataclass
class FaultRun:
    """One pipeline run on the private stack (see the module docstring)."""

    settings: Settings
    processes: list[process.ServiceRecord] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    @property
    def db(self) -> str:
        return self.settings.clickhouse.database

    @property
    def run_id(self) -> str:
        return self.settings.kafka.consumer_group.removeprefix("inline-")

    @classmethod
    def create(cls, base: Settings, **groups) -> "FaultRun":
        run = uuid.uuid4().hex[:8]
        topics = {name: f"judgeline.{name}.{run}" for name in
                  ("traces", "frontier_requests", "verdicts", "frontier_verdicts", "dead_letters",
                   "routing_policies")}
        settings = base.model_copy(update={
            "kafka": base.kafka.model_copy(update={
                "topics": base.kafka.topics.model_copy(update=topics),
                "consumer_group": f"inline-{run}", "frontier_consumer_group": f"frontier-{run}"}),
            "stream": base.stream.model_copy(update={"batch_size": 8, "batch_within_s": 0.1,
                                                     "frontier_batch_size": 8, "hold_max_backoff_s": 1.0}),
            "frontier": base.frontier.model_copy(update={"rate_limit_rps": 500, "max_retries": 2, "timeout_s": 10}),
        })
        out = cls(settings)
        out.settings = out.with_database(**groups)
        ensure_topics(out.settings)
        return out

    def with_database(self, **groups) -> Settings:
        """The run's settings with a fresh ClickHouse database (migrated) and the given groups updated."""
        database = f"f_{uuid.uuid4().hex[:12]}"
        update = {name: getattr(self.settings, name).model_copy(update=values) for name, values in groups.items()}
        update["clickhouse"] = self.settings.clickhouse.model_copy(update={"database": database})
        settings = self.settings.model_copy(update=update)
        migrate(connect(settings), database)
        self.databases.append(database)
        return settings

    # --- processes ---

    def worker(self, role: str, *, stub_ms: float | None = None, settings: Settings | None = None,
               name: str | None = None, ready: bool = True, args: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> process.ServiceRecord:
        settings = settings or self.settings
        extra = (("--stub-judge-ms", str(stub_ms)) if stub_ms is not None else ()) + args
        record = start_worker(settings, role, name=name or f"{role}-{uuid.uuid4().hex[:6]}", extra_args=extra,
                              env=env)
        self.processes.append(record)
        if ready:
            self.wait_ready(record, settings)
        return record

    def wait_ready(self, record: process.ServiceRecord, settings: Settings | None = None) -> None:
        wait_worker_ready(settings or self.settings, record, timeout_s=120)

    def replay(self, gold: Path, faults: frontier_replay.Faults, settings: Settings | None = None) -> Settings:
        """Start a replay frontier with ``faults``; returns ``settings`` pointed at it."""
        settings = settings or self.settings
        record = frontier_replay.start(settings, [gold], faults=faults, name=f"replay-{uuid.uuid4().hex[:6]}")
        self.processes.append(record)
        process.wait_healthy(record, lambda: frontier_replay.healthy(settings, record), 60)
        return settings.model_copy(update={"frontier": settings.frontier.model_copy(
            update={"base_url": record.extra["base_url"]})})

    def committed(self, group: str | None = None, topic: str | None = None) -> dict[int, int | None]:
        """The group's committed offsets on the topic (default: the inline group on the traces topic)."""
        from operations.lag import committed_offsets

        return committed_offsets(self.settings, group or self.settings.kafka.consumer_group,
                                 topic or self.settings.kafka.topics.traces)

    def stop(self) -> None:
        for record in self.processes:  # SIGTERM to all first: they shut down side by side
            if process.is_running(record):
                os.killpg(record.pid, signal.SIGTERM)
        for record in reversed(self.processes):
            process.stop(record)
        client = connect(self.settings)
        for database in self.databases:
            client.command(f"DROP DATABASE IF EXISTS {database}")

    # --- traffic ---

    def send(self, traces, malformed: int = 0, rate: float | None = None) -> list[tuple[bytes, bytes]]:
        """Publish the traces and ``malformed`` bad messages (keys unique to the run); returns the bad messages."""
        bad = malformed_messages(malformed, f"{self.run_id}-{uuid.uuid4().hex[:4]}-")
        messages = [(t.trace_id.encode(), t.to_bytes()) for t in traces] + bad
        result = produce(self.settings, messages, rate=rate)
        assert (result.sent, result.failed) == (len(messages), 0), result.first_error
        return bad

    # --- the store ---

    def rows(self, sql: str, settings: Settings | None = None) -> list[tuple]:
        db = (settings or self.settings).clickhouse.database
        return connect(self.settings).query(sql.format(db=db)).result_rows

    def count(self, sql: str, settings: Settings | None = None) -> int:
        return self.rows(sql, settings)[0][0]

    def accounted(self) -> int:
        """Verdicts plus dead letters stored (after FINAL)."""
        return (self.count("SELECT count() FROM {db}.verdicts FINAL")
                + self.count("SELECT count() FROM {db}.dead_letters FINAL"))

    def wait_accounted(self, n: int, timeout_s: float = 120) -> None:
        assert wait_until(lambda: self.accounted() >= n, timeout_s), \
            f"only {self.accounted()} of {n} messages have a verdict or a dead letter after {timeout_s} s"

    def assert_each_once(self, traces, bad: list[tuple[bytes, bytes]], settle_s: float = 1.5) -> dict[str, int]:
        """Every trace exactly one verdict, every bad message exactly one dead letter, after FINAL; nothing else.
        Returns the raw (before FINAL) row counts, which show the redeliveries."""
        time.sleep(settle_s)  # a duplicate or a stray row would land now
        ids = sorted(t.trace_id for t in traces)
        verdicts = self.rows("SELECT trace_id, count() FROM {db}.verdicts FINAL GROUP BY trace_id")
        assert sorted(t for t, _ in verdicts) == ids, "the traces with a verdict are not the traces produced"
        assert [t for t, n in verdicts if n != 1] == [], "a trace has more than one verdict after FINAL"
        letters = self.rows("SELECT key, count() FROM {db}.dead_letters FINAL GROUP BY key")
        assert sorted(k for k, _ in letters) == sorted(k.decode() for k, _ in bad)
        assert all(n == 1 for _, n in letters), "a malformed message has more than one dead letter"
        return {"verdicts": self.count("SELECT count() FROM {db}.verdicts"),
                "dead_letters": self.count("SELECT count() FROM {db}.dead_letters")}
