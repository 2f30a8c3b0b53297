"""Consuming a topic in batches with librdkafka (confluent-kafka) instead of Faust's per-event stream.

Contract:
- ``BatchConsumer(settings, topic, group, name)`` is one member of consumer group ``group`` on ``topic``, configured
  from ``settings.kafka`` as the Faust workers are (broker and credentials, session timeout, heartbeat, max poll
  interval, fetch wait, a new group starting at the earliest offset). ``await start()`` subscribes; ``await close()``
  leaves the group (committing what was marked done, nothing else) and is bounded by ``close_timeout_s``.
- ``await take(size, within_s)`` returns the next batch: up to ``size`` records gathered within ``within_s`` seconds
  (librdkafka builds the list in C: no per-record Python work but turning each into an ``Incoming``), as
  ``Incoming`` with every Kafka-level field untrusted (``streams.app.incoming_fields``: key, value, timestamp). An
  empty list means nothing arrived in time. Records from a partition revoked while they waited are dropped (its new
  owner consumes them from the committed offset). Per-partition errors (a topic not created yet, end of partition)
  are logged and skipped; a fatal client error raises ``KafkaException``.
- At-least-once: offsets are committed by librdkafka's own auto-commit (every ``kafka.commit_interval_s``) and by
  this class before partitions are revoked and on close, but only offsets stored with ``done(messages)``: the next offset of each partition the
  messages came from, called once a batch's rows are stored and its messages published. Batches must be marked done
  in the order they were taken (``streams.overlap.InOrderDelivery``). A batch never marked done (an error, a crash,
  a shutdown) is never committed and is redelivered. Storing an offset of a partition no longer assigned is skipped
  (its new owner redelivers: duplicates, never losses, and the tables are idempotent).
- ``await held(awaitable)`` awaits ``awaitable`` (a ``submit`` that waits while the store or the judge holds) and
  keeps the member in its group meanwhile: after ``keepalive_s`` (a third of the max poll interval, at most 5 s)
  every assigned partition is paused and the consumer polled every half second, which serves rebalances and the
  max poll interval; records that still arrive are kept for the next ``take``. Partitions resume when it is done.
- Every call on the librdkafka consumer runs on one daemon thread of its own (its rebalance callbacks run there,
  inside ``consume``): a call blocked on an unreachable broker never blocks the event loop nor keeps the process
  alive. ``done`` only queues its offsets on that thread (the order of the queue keeps them ahead of ``close``).
- ``partitions()``: how many partitions the member holds; ``ready()``: it holds some and is not between a revoke and
  the next assignment (the worker's ``/ready/``, ``streams.app.consumer_state``). ``lag()``: ``{(topic, partition): messages}`` from the high watermark of the last fetch minus the
  last committed offset (only meaningful where the broker reports watermarks: ``kafka.broker_reports_lag``).
- Rebalances are logged at INFO (``partitions assigned``, ``Revoking previously assigned partitions``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from typing import Awaitable, Callable, Sequence, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from judge_engine.online.pipeline import Incoming
from schemas.settings import Settings
from streams.app import incoming_fields

log = logging.getLogger("judgeline.consumer")
T = TypeVar("T")


class _ClientThread:
    """One daemon thread that runs every call on a librdkafka client, in the order they were queued."""

    def __init__(self, name: str):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fn, args, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                future.set_exception(exc)

    def queue(self, fn: Callable[..., T], *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((fn, args, future))
        return future

    async def call(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.wrap_future(self.queue(fn, *args))

    def stop(self) -> None:
        self._calls.put(None)


class BatchConsumer:
    POLL_WHILE_HELD_S = 0.5
    POLL_WHILE_HELD_MAX = 512  # records one poll while held may return (kept for the next take)

    def __init__(self, settings: Settings, topic: str, group: str, name: str = "inline",
                 close_timeout_s: float = 5.0):
        kafka = settings.kafka
        self.topic, self.group, self.close_timeout_s = topic, group, close_timeout_s
        self.keepalive_s = min(5.0, kafka.max_poll_interval_s / 3)
        self._conf = {
            **kafka.client_config(), "group.id": group, "client.id": f"judgeline-{name}",
            "enable.auto.commit": True, "enable.auto.offset.store": False,
            "auto.commit.interval.ms": max(1, int(kafka.commit_interval_s * 1000)),
            "auto.offset.reset": "earliest",
            "session.timeout.ms": kafka.session_timeout_ms, "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
            # librdkafka refuses a max poll interval below the session timeout
            "max.poll.interval.ms": max(int(kafka.max_poll_interval_s * 1000), kafka.session_timeout_ms),
            "fetch.wait.max.ms": kafka.fetch_max_wait_ms,
            "on_commit": self._on_commit, "logger": logging.getLogger("judgeline.librdkafka"),
        }
        self._thread: _ClientThread | None = None
        self._consumer = None
        self._assigned: set[tuple[str, int]] = set()
        self._revoking = False
        self._committed: dict[tuple[str, int], int] = {}
        self._pending: list = []  # records polled while held, taken first by the next ``take``

    # --- lifecycle ---

    async def start(self) -> "BatchConsumer":
        self._thread = _ClientThread(f"judgeline-consumer-{self.group}")
        self._consumer = await self._thread.call(Consumer, self._conf)
        await self._thread.call(self._consumer.subscribe, [self.topic], self._on_assign, self._on_revoke,
                                self._on_lost)
        return self

    async def close(self) -> None:
        thread, consumer = self._thread, self._consumer
        if thread is None or consumer is None:
            return
        self._thread = self._consumer = None
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(thread.queue(self._close, consumer))),
                                   self.close_timeout_s)
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - leaving the group late is only slower
            log.warning("the %s consumer did not close within %.0f s (%s): its group rebalances after the session "
                        "timeout instead", self.group, self.close_timeout_s, type(exc).__name__)
        finally:
            thread.stop()

    def _close(self, consumer) -> None:
        self._commit_stored(consumer)
        consumer.close()

    def _commit_stored(self, consumer) -> None:
        """Commit the offsets stored so far, now (librdkafka's auto-commit does not on close nor before a revoke)."""
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing stored since the last commit: nothing to do
                log.warning("offset commit of %s failed: %s (its batches are redelivered)", self.group, exc.args[0])

    # --- rebalance callbacks (on the client thread, inside consume) ---

    def _on_assign(self, consumer, partitions) -> None:
        self._revoking = False
        self._assigned = {(p.topic, p.partition) for p in partitions}
        log.info("partitions assigned to %s: %s", self.group, sorted(p for _, p in self._assigned))

    def _on_revoke(self, consumer, partitions, lost: bool = False) -> None:
        self._revoking = True
        gone = {(p.topic, p.partition) for p in partitions}
        log.info("Revoking previously assigned partitions %s of %s", sorted(p for _, p in gone), self.group)
        if not lost:  # what was marked done before the partitions go: their new owner starts after it
            self._commit_stored(consumer)
        self._assigned -= gone
        self._pending = [m for m in self._pending if (m.topic(), m.partition()) not in gone]

    def _on_lost(self, consumer, partitions) -> None:
        log.warning("partitions lost by %s (the group moved on without this member): %s", self.group,
                    sorted(p.partition for p in partitions))
        self._on_revoke(consumer, partitions, lost=True)

    def _on_commit(self, err, partitions) -> None:
        if err is not None:
            log.warning("offset commit of %s failed: %s (retried with the next commit)", self.group, err)
            return
        for p in partitions:
            if p.error is None and p.offset >= 0:
                self._committed[(p.topic, p.partition)] = p.offset

    # --- consuming ---

    def _consume(self, size: int, within_s: float) -> list:
        records = []
        for m in self._consumer.consume(size, within_s):
            err = m.error()
            if err is None:
                records.append(m)
            elif err.fatal():
                raise KafkaException(err)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer %s: %s", self.group, err)
        return records

    async def take(self, size: int, within_s: float) -> list[Incoming]:
        if self._pending:
            records, self._pending = self._pending[:size], self._pending[size:]
        else:
            records = await self._thread.call(self._consume, size, within_s)
        return [incoming_record(m) for m in records]

    def done(self, messages: Sequence[Incoming]) -> None:
        """Mark a stored batch's offsets for commit (the next offset of each partition it came from)."""
        nxt: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic, m.partition)
            if m.offset + 1 > nxt.get(key, -1):
                nxt[key] = m.offset + 1
        if nxt and self._thread is not None:
            stored = self._thread.queue(self._store, self._consumer, nxt)  # the consumer now: close() forgets it
            stored.add_done_callback(_log_failure)

    def _store(self, consumer, offsets: dict[tuple[str, int], int]) -> None:
        for (topic, partition), offset in offsets.items():
            try:
                consumer.store_offsets(offsets=[TopicPartition(topic, partition, offset)])
            except KafkaException as exc:  # revoked meanwhile: its new owner redelivers
                log.info("offset %s of %s[%s] not stored (%s): the partition's new owner consumes it again",
                         offset, topic, partition, exc.args[0])

    async def held(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.keepalive_s)
            if done:
                return task.result()
            log.info("consumer %s: the pipeline is holding; partitions paused, polling to stay in the group",
                     self.group)
            await self._thread.call(self._pause)
            try:
                while not task.done():
                    poll = asyncio.ensure_future(self._thread.call(self._poll_paused))
                    await asyncio.wait({task, poll}, return_when=asyncio.FIRST_COMPLETED)
                    self._pending.extend(await poll)
            finally:
                if self._thread is not None:
                    await self._thread.call(self._resume)
            return task.result()
        finally:
            if not task.done():
                task.cancel()

    def _pause(self) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)

    def _poll_paused(self) -> list:
        records = self._consume(self.POLL_WHILE_HELD_MAX, self.POLL_WHILE_HELD_S)
        self._pause()  # a rebalance meanwhile assigned partitions that are not paused yet
        return records

    def _resume(self) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.resume(assignment)

    # --- state ---

    def partitions(self) -> int:
        return len(self._assigned)

    def ready(self) -> bool:
        return bool(self._assigned) and not self._revoking

    def lag(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        consumer = self._consumer
        if consumer is None:
            return out
        for topic, partition in sorted(self._assigned):
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except Exception:  # noqa: BLE001 - nothing fetched yet
                continue
            if high is not None and high >= 0:
                out[(topic, partition)] = max(0, high - self._committed.get((topic, partition), 0))
        return out


def _log_failure(future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("storing offsets for commit failed: %r (the batch is redelivered)", future.exception())


def incoming_record(m) -> Incoming:
    """A librdkafka message as the stages' ``Incoming`` (never raises on its contents; see ``streams.app``)."""
    kind, ms = m.timestamp()
    seconds = ms / 1000 if kind and isinstance(ms, int) else None  # kind 0: TIMESTAMP_NOT_AVAILABLE
    return incoming_fields(m.value(), m.key(), m.topic(), m.partition(), m.offset(), seconds)


async def run_overlapped(consumer: BatchConsumer, prepare: Callable[[list[Incoming]], Awaitable],
                         delivery, size: int, within_s: float,
                         on_batch: Callable[[Sequence], None] | None = None) -> None:
    """The batch consumer's loop: take a batch, prepare (judge) it, hand it to ``delivery``
    (``streams.overlap.InOrderDelivery`` built with ``acknowledge=consumer.done``) while staying in the group."""
    while True:
        messages = await consumer.take(size, within_s)
        if not messages:
            continue
        if on_batch is not None:
            on_batch(messages)
        batch = await consumer.held(prepare(messages))
        await consumer.held(delivery.submit(messages, batch))


async def run_in_turn(consumer: BatchConsumer, process: Callable[[list[Incoming]], Awaitable], size: int,
                      within_s: float) -> None:
    """The batch consumer's plain loop: each batch through ``process`` (which stores and publishes it), then marked
    done, one at a time (the span-ingest agent)."""
    while True:
        messages = await consumer.take(size, within_s)
        if messages:
            await consumer.held(process(messages))
            consumer.done(messages)
