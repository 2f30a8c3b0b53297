"""Pieces shared by the two stream stages (inline judge, frontier worker), independent of Kafka and Faust.

Contract:
- ``Incoming`` is one consumed message as the stages see it: the raw value bytes (never decoded before
  validation, so bad bytes reach a dead letter whole), key, topic, partition, offset and the message's own
  timestamp (the producer's create time: the start of the produce-to-stored latency).
- ``dead_letter(message, error, stage)`` is the ``DeadLetter`` for a message: its identity is the source
  topic/partition/offset, so storing it twice (redelivery) keeps one row. The raw bytes are kept whole up to
  ``DEAD_LETTER_RAW_BYTES`` (512 KiB, twice the largest valid message); beyond that only the first 512 KiB are
  kept and the error says so with the original size and SHA-256 (the whole message stays at its source offset):
  a dead letter must always fit the producer's 1 MB request (base64 in JSON), or publishing it would fail for ever
  and stall the worker on one hostile message.
- ``rolled_forward(values)`` counts the parsed messages written in a newer minor schema version (accepted under
  ``schemas.versioning``'s rule, their unknown fields kept under metadata): the stages tally it as
  ``rolled_forward`` (``judgeline_stage_events_total{event="rolled_forward"}``), what an operator watches during a
  rolling upgrade.
- ``Rows`` is what one batch writes to the store, per table; ``Outbox`` what it publishes, per topic.
- ``write_isolating(store, rows, origin)`` bounds a permanent store error: when the store refuses a batch for good
  (the failure policy's ``permanent``, e.g. ClickHouse VIOLATED_CONSTRAINT), each row is written alone and a row it
  still refuses becomes a dead letter (stage ``store``) of its source message (``origin(row)``); the rest of the
  batch is stored and goes on. ``BatchStage._store_then_publish`` uses it (and publishes the new dead letters);
  without an origin, or for a refused dead letter, the error holds like a transient one.
- ``hold(fn, what=...)`` runs an awaitable call until it succeeds (a tenacity retryer that never stops), waiting
  between attempts with ``judge_engine.failures.JitteredWait`` (capped at ``max_backoff_s``, honouring Retry-After):
  this is how a stage "stops consuming rather than dropping" while a dependency is down. Each failure is logged with
  the failure policy's classification; only cancellation (worker shutdown) ends the wait, and then nothing of the
  batch has been acknowledged, so the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Awaitable, Callable, Mapping, Protocol, Sequence, TypeVar

import tenacity

from judge_engine.failures import JitteredWait, classify, describe
from schemas import versioning
from schemas.base import InvalidMessage, Message, parse_json_bytes, utc_now
from schemas.dead_letter import DeadLetter, Stage
from schemas.trace import Trace
from schemas.verdict import Disagreement, FrontierVerdict, Verdict

log = logging.getLogger("judgeline.pipeline")
T = TypeVar("T")


@dataclass(frozen=True)
class Incoming:
    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None = None


DEAD_LETTER_RAW_BYTES = 512 * 1024


def dead_letter(message: Incoming, error: str, stage: Stage) -> DeadLetter:
    raw = message.value or b""
    error = error or "(no reason given)"
    if len(raw) > DEAD_LETTER_RAW_BYTES:
        note = (f" [raw kept: the first {DEAD_LETTER_RAW_BYTES} of {len(raw)} bytes, sha256 "
                f"{hashlib.sha256(raw).hexdigest()}; the whole message is at its source offset]")
        error, raw = error[: 4096 - len(note)] + note, raw[:DEAD_LETTER_RAW_BYTES]
    return DeadLetter(
        raw=raw,
        error=error,
        stage=stage,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key if message.key is None or len(message.key) <= 4096 else message.key[:4096],
        message_time=message.timestamp or utc_now(),
    )


def parse_one(message: Incoming, model: type[T], send: str, max_bytes: int | None = None) -> T | DeadLetter:
    """The message's value as ``model`` (``schemas.base.parse_json_bytes``), or its dead letter naming the field;
    ``send`` says what a producer should send instead of a tombstone."""
    if message.value is None:
        return dead_letter(message, f"(message): empty value (a tombstone); send {send}", "parse")
    try:
        return parse_json_bytes(model, message.value, **({"max_bytes": max_bytes} if max_bytes else {}))
    except InvalidMessage as e:
        return dead_letter(message, e.reason, "parse")


def parse_all(messages: Sequence[Incoming], parse: Callable[[Incoming], T | DeadLetter],
              ) -> tuple[list[tuple[Incoming, T]], list[DeadLetter]]:
    """Every message through ``parse``: (message, value) pairs for those that parse, dead letters for the rest;
    both keep the batch's order."""
    valid: list[tuple[Incoming, T]] = []
    dead: list[DeadLetter] = []
    for message in messages:
        parsed = parse(message)
        if isinstance(parsed, DeadLetter):
            dead.append(parsed)
        else:
            valid.append((message, parsed))
    return valid, dead


def rolled_forward(values: Sequence[Message]) -> int:
    return sum(versioning.is_newer(v.schema_version) for v in values)


@dataclass
class Rows:
    """Rows one batch stores, per table (``schemas/ddl.py``)."""

    verdicts: list[Verdict] = field(default_factory=list)
    frontier_verdicts: list[FrontierVerdict] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)  # routed traces, with their text (the annotation queue's)

    def tables(self) -> dict[str, list]:
        return {"verdicts": self.verdicts, "frontier_verdicts": self.frontier_verdicts,
                "disagreements": self.disagreements, "dead_letters": self.dead_letters, "traces": self.traces}

    def __len__(self) -> int:
        return sum(len(v) for v in self.tables().values())


@dataclass
class Outbox:
    """Messages one batch publishes: (topic, key, value bytes)."""

    messages: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)

    def add(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        self.messages.append((topic, key.encode() if isinstance(key, str) else key, value))

    def add_dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> None:
        """Each dead letter under its source message's key (every stage publishes them the same way)."""
        for letter in letters:
            self.add(topic, letter.key, letter.to_bytes())

    def __len__(self) -> int:
        return len(self.messages)


Origin = Callable[[object], "Incoming | None"]


async def write_isolating(store: "Store", rows: Rows, origin: Origin | None) -> list[DeadLetter]:
    """Write ``rows``; when the store refuses them for good (a permanent error), write each row alone and replace
    every row it still refuses for good by a dead letter (stage ``store``) of the message it came from
    (``origin(row)``), then write the dead letters. Returns those new dead letters. A transient error, a refused row
    without an origin, or a refused dead letter raises (the caller holds: nothing is lost, the stall is visible)."""
    try:
        await store.write(rows)
        return []
    except Exception as e:  # noqa: BLE001 - classified just below; cancellation is not an Exception
        if classify(e) != "permanent" or origin is None:
            raise
        log.warning("the store refused a batch of %d rows for good (%s); writing its rows one by one",
                    len(rows), describe(e))
    letters: list[DeadLetter] = []
    for table, items in rows.tables().items():
        if table == "dead_letters":
            continue
        for item in items:
            try:
                await store.write(Rows(**{table: [item]}))
            except Exception as e:  # noqa: BLE001 - classified just below
                message = origin(item) if classify(e) == "permanent" else None
                if message is None:
                    raise
                letters.append(dead_letter(message, f"the store refused its {table} row for good: {describe(e)}",
                                           "store"))
    if rows.dead_letters or letters:
        await store.write(Rows(dead_letters=rows.dead_letters + letters))
    return letters


class Store(Protocol):
    async def write(self, rows: Rows) -> None: ...


Publish = Callable[[Outbox], Awaitable[None]]


async def hold(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    max_backoff_s: float = 10.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    logger: logging.Logger = log,
    held: Callable[[float], None] | None = None,
) -> T:
    def holding(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception()
        logger.warning("%s failed (%s error, attempt %d): %s; holding the batch (nothing acknowledged), "
                       "retrying in %.1f s", what, classify(exc), state.attempt_number, describe(exc),
                       state.next_action.sleep)
        if held is not None:
            held(state.next_action.sleep)

    # every failure holds, permanent ones too (the log says which kind it was); cancellation is not an Exception
    retry = tenacity.AsyncRetrying(retry=tenacity.retry_if_exception_type(Exception), stop=tenacity.stop_never,
                                   wait=JitteredWait(initial_s=0.2, max_s=max_backoff_s), before_sleep=holding,
                                   sleep=sleep, reraise=True)

    async def attempt() -> T:  # fn may return any awaitable; tenacity awaits coroutine functions only
        return await fn()

    return await retry(attempt)


class Recorder:
    """Told what a stage did (see the module contract); every method does nothing here: a recorder overrides what
    it watches."""

    def batch(self, stage: str, consumed: int, rows: Rows) -> None:
        return None

    def tally(self, stage: str, counts: Mapping[str, int]) -> None:
        return None

    def call(self, stage: str, dependency: str, seconds: float) -> None:
        return None

    def held(self, stage: str, dependency: str, seconds: float) -> None:
        return None

    def frontier(self, verdicts: Sequence[FrontierVerdict]) -> None:
        return None

    def judged(self, stage: str, pairs: Sequence[tuple[Trace, Verdict | FrontierVerdict]]) -> None:
        return None


class Recorders(Recorder):
    """Several recorders told the same things, in order. Watching never stops the stream: a recorder that raises is
    logged (with its traceback) and the others are still told."""

    def __init__(self, *recorders: Recorder):
        self.recorders = recorders

    def _each(self, method: str, *args) -> None:
        for r in self.recorders:
            try:
                getattr(r, method)(*args)
            except Exception:  # noqa: BLE001 - a metrics or export bug must not fail a stored batch
                log.exception("recorder %s failed in %s; the batch is unaffected", type(r).__name__, method)

    def batch(self, stage: str, consumed: int, rows: Rows) -> None:
        self._each("batch", stage, consumed, rows)

    def tally(self, stage: str, counts: Mapping[str, int]) -> None:
        self._each("tally", stage, counts)

    def call(self, stage: str, dependency: str, seconds: float) -> None:
        self._each("call", stage, dependency, seconds)

    def held(self, stage: str, dependency: str, seconds: float) -> None:
        self._each("held", stage, dependency, seconds)

    def frontier(self, verdicts: Sequence[FrontierVerdict]) -> None:
        self._each("frontier", verdicts)

    def judged(self, stage: str, pairs: Sequence[tuple[Trace, Verdict | FrontierVerdict]]) -> None:
        self._each("judged", stage, pairs)


NO_RECORDER: Recorder = Recorder()


class BatchStage:
    """What every worker stage does after judging a batch: store its rows, then publish its messages, each held
    (backoff, no consuming) while it fails; plus running counts, logged every 10 s (with the seconds spent judging, storing and publishing: ``*_s``).
    Subclasses judge."""

    name = "stage"

    def __init__(self, settings, judge, store: Store, publish: "Publish", *, sleep=asyncio.sleep,
                 recorder: Recorder = NO_RECORDER):
        import time
        from collections import Counter

        self.settings = settings
        self.judge = judge
        self.store = store
        self.publish = publish
        self.sleep = sleep
        self.recorder = recorder
        self.stats: Counter = Counter()
        self._clock = time.monotonic
        self._last_log = self._clock()

    async def _hold(self, fn, what: str, dependency: str = "judge"):
        started = self._clock()
        result = await hold(fn, what=what, max_backoff_s=self.settings.stream.hold_max_backoff_s, sleep=self.sleep,
                            logger=log, held=lambda s: self.recorder.held(self.name, dependency, s))
        self.recorder.call(self.name, dependency, self._clock() - started)
        return result

    async def _store_then_publish(self, rows: Rows, outbox: Outbox, consumed: int = 0,
                                  origin: Origin | None = None) -> list[DeadLetter]:
        """Returns the dead letters of rows the store refused for good (``write_isolating``; published too)."""
        letters: list[DeadLetter] = []
        if len(rows):
            with self._timed("store_s"):
                letters = await self._hold(lambda: write_isolating(self.store, rows, origin),
                                           f"storing {len(rows)} rows", "store")
            outbox.add_dead_letters(self.settings.kafka.topics.dead_letters, letters)
        self.recorder.batch(self.name, consumed, rows)
        if letters:  # rows the store refused for good: counted as the dead letters they became
            self.recorder.batch(self.name, 0, Rows(dead_letters=letters))
        if len(outbox):
            with self._timed("publish_s"):
                await self._hold(lambda: self.publish(outbox), f"publishing {len(outbox)} messages", "broker")
        return letters

    @contextlib.contextmanager
    def _timed(self, name: str):
        """Adds the seconds the block took to the running count ``name`` (the per-batch breakdown in the log)."""
        start = self._clock()
        try:
            yield
        finally:
            self.stats[name] += self._clock() - start

    def _tally(self, counts: dict[str, float]) -> None:
        self.stats.update(counts)
        self.recorder.tally(self.name, counts)
        if self._clock() - self._last_log >= 10:
            self.log_stats()

    def log_stats(self) -> None:
        """Log the running counts now (every 10 s while batches come, and once when the agent stops)."""
        self._last_log = self._clock()
        log.info("%s stage so far: %s", self.name,
                 {k: round(v, 4) if isinstance(v, float) else v for k, v in sorted(self.stats.items())})
