"""`judgeline replay`: read the traces and frontier-verdicts topics over a range into a retrain dataset.

Contract:
- Its own consumer: confluent-kafka with ``assign()`` (never ``subscribe``), a fresh group id
  (``judgeline-replay-<random>``, or one given that is not a worker's group), auto-commit off and no commit ever.
  It never joins a consumer group, so the live workers' groups, their assignments and committed offsets are
  untouched.
- End offsets are captured once, at start, for every partition of both topics, before anything is read, and
  reading stops exactly there even while producers keep producing. The end is the high watermark: ListOffsets
  (``get_watermark_offsets``, what Apache Kafka answers correctly) reconciled with the high watermark a fetch
  reports at the same moment; the embedded Tansu broker answers ListOffsets with the start of the last batch + 1
  (``../shared/docs/platform.md``) but its fetches report the true end, so the larger of the two is the end on
  both brokers (the manifest keeps both). A partition is done when the message at ``end - 1`` was read or the
  consumer reports end of partition at or past ``end``; a partition that makes no progress for
  ``idle_timeout_s`` stops the replay with an error naming it.
- Ranges: ``--from-offset``/``--to-offset`` (``OFFSET``, ``PARTITION:OFFSET`` or ``TOPIC:PARTITION:OFFSET``;
  from inclusive, to exclusive, clamped to what exists) and ``--since``/``--until`` (message timestamps,
  inclusive). ``--since`` seeks with ``offsets_for_times`` where the broker answers it truthfully (the message at
  the answered offset must be at or after ``since``); Tansu answers 0 whatever the time, so there the partition is
  scanned from its start and filtered by message timestamp (recorded per partition as ``time_seek: scan``).
  ``--until`` filters by timestamp inside the captured range (timestamps need not be monotonic). The ranges select
  traces; the frontier-verdicts topic is read up to its captured end (from ``--from-offset`` when one names it),
  and only the verdicts of the selected traces are kept.
- Gold labels come from ClickHouse (``gold_labels FINAL``, rows with a human label), read with the failure
  policy's retries; ``--no-gold`` skips them. The join, deduplication and augmentation are
  ``judge_engine.training.replay_dataset`` (see its contract for the label precedence and the counts).
- Output in ``--out``: ``dataset.jsonl`` (gold format, valid for ``judgeline train``), ``dataset.parquet`` (same
  rows, plus flat ``label``/``label_source`` columns; pyarrow), ``manifest.json`` (topics, per-partition ranges,
  counts read/invalid/out of time range/deduplicated/unlabelled/written, label sources, options, timings, the
  command that retrains on it). Files are written under a temporary name and renamed into place. A tqdm bar
  shows the messages read against the captured total.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from schemas.settings import Settings

log = logging.getLogger("judgeline.replay")

FORMATS = ("jsonl", "parquet")
EOF_CODE = -191  # confluent_kafka.KafkaError._PARTITION_EOF


class ReplayError(RuntimeError):
    """A replay that cannot proceed; the message names what and how to fix it."""


@dataclass(frozen=True)
class OffsetBound:
    topic: str | None  # None: the traces topic
    partition: int | None  # None: every partition
    offset: int


def parse_offset(value: str, option: str) -> OffsetBound:
    """``OFFSET``, ``PARTITION:OFFSET`` or ``TOPIC:PARTITION:OFFSET`` (topic names cannot contain ':')."""
    parts = value.split(":")
    try:
        numbers = [int(p) for p in parts[-2:]] if len(parts) > 1 else [int(parts[0])]
    except ValueError:
        numbers = []
    if not 1 <= len(parts) <= 3 or not numbers or any(n < 0 for n in numbers):
        raise ReplayError(f"{option} {value!r}: expected OFFSET, PARTITION:OFFSET or TOPIC:PARTITION:OFFSET "
                          "with non-negative integers, e.g. 0:1500")
    if len(parts) == 1:
        return OffsetBound(None, None, numbers[0])
    return OffsetBound(parts[0] if len(parts) == 3 else None, numbers[0], numbers[1])


def parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ReplayError(f"{option} {value!r}: expected an ISO 8601 time, e.g. 2025-01-31T12:00:00+00:00 "
                          "(a time without offset is UTC)") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


@dataclass
class ReplayOptions:
    out: Path
    from_offsets: tuple[OffsetBound, ...] = ()
    to_offsets: tuple[OffsetBound, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    swap: bool = False
    reference_drop: float = 0.0
    formats: tuple[str, ...] = FORMATS
    gold: bool = True
    group_id: str | None = None
    idle_timeout_s: float = 60.0
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(FORMATS)
        if unknown or not self.formats:
            raise ReplayError(f"--format {','.join(self.formats)}: choose from {', '.join(FORMATS)}")
        if not 0.0 <= self.reference_drop <= 1.0:
            raise ReplayError(f"--reference-drop {self.reference_drop}: give a fraction in [0, 1]")
        if self.since and self.until and self.since > self.until:
            raise ReplayError("--since is after --until; swap them")


@dataclass
class PartitionRange:
    topic: str
    partition: int
    low: int
    listed_end: int  # ListOffsets (latest) at start
    end: int  # the captured end: reading stops here (exclusive)
    start: int = 0
    time_seek: str | None = None  # "offsets_for_times" or "scan" when --since was given
    read: int = 0
    done: bool = False

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def _consumer(settings: Settings, group_id: str):
    from confluent_kafka import Consumer

    return Consumer({
        **settings.kafka.client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": settings.kafka.fetch_max_wait_ms,
    }, logger=logging.getLogger("judgeline.kafka"))


def _partitions(consumer, topic: str, timeout_s: float) -> list[int]:
    meta = consumer.list_topics(topic, timeout=timeout_s)
    t = meta.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise ReplayError(f"topic {topic} does not exist ({t.error if t is not None and t.error else 'no partitions'})"
                          "; check JUDGELINE_KAFKA__TOPICS__* and JUDGELINE_KAFKA__BOOTSTRAP_SERVERS")
    return sorted(t.partitions)


def _poll_each(consumer, assignments: dict[tuple[str, int], int], timeout_s: float) -> dict[tuple[str, int], Any]:
    """Assign each (topic, partition) at an offset and return its first message or end-of-partition event."""
    from confluent_kafka import TopicPartition

    if not assignments:
        return {}
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in assignments.items()])
    first: dict[tuple[str, int], Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(first) < len(assignments) and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=len(assignments) * 8, timeout=0.5):
                key = (m.topic(), m.partition())
                if key in assignments and key not in first:
                    if m.error() is not None and m.error().code() != EOF_CODE:
                        raise ReplayError(f"reading {key[0]} partition {key[1]}: {m.error()}")
                    first[key] = m
    finally:
        consumer.unassign()
    return first


def capture_ends(consumer, topics: list[str], timeout_s: float = 10.0) -> dict[tuple[str, int], PartitionRange]:
    """Every partition's end offset, now (see the module contract: ListOffsets reconciled with a fetch)."""
    from confluent_kafka import TopicPartition

    ranges: dict[tuple[str, int], PartitionRange] = {}
    for topic in topics:
        for p in _partitions(consumer, topic, timeout_s):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s, cached=False)
            ranges[(topic, p)] = PartitionRange(topic, p, low, high, high)
    probe = {k: r.listed_end - 1 for k, r in ranges.items() if r.listed_end > r.low}
    answered = _poll_each(consumer, probe, timeout_s)
    for key in probe:
        if key not in answered:
            log.warning("%s partition %d: no fetch answered within %.0f s; its end is ListOffsets' %d",
                        *key, timeout_s, ranges[key].listed_end)
        _, fetched = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
        r = ranges[key]
        r.end = max(r.listed_end, fetched if fetched is not None and fetched >= 0 else -1)
    return ranges


def _bound(bounds: tuple[OffsetBound, ...], r: PartitionRange, traces_topic: str) -> int | None:
    """The most specific bound that names this partition (topic:partition > partition > all)."""
    best, rank = None, -1
    for b in bounds:
        if (b.topic or traces_topic) != r.topic or (b.partition is not None and b.partition != r.partition):
            continue
        specific = (b.topic is not None) + (b.partition is not None)
        if specific >= rank:
            best, rank = b.offset, specific
    return best


def _seek_since(consumer, ranges: list[PartitionRange], since: datetime, timeout_s: float) -> None:
    """Start each range at the first offset at or after ``since`` where the broker answers truthfully, else scan."""
    from confluent_kafka import OFFSET_END, TopicPartition

    ms = int(since.timestamp() * 1000)
    live = [r for r in ranges if r.size]
    if not live:
        return
    answers = consumer.offsets_for_times([TopicPartition(r.topic, r.partition, ms) for r in live], timeout=timeout_s)
    candidates: dict[tuple[str, int], int] = {}
    for r, tp in zip(live, answers):
        if tp.error is None and tp.offset in (OFFSET_END, -1):
            r.start, r.time_seek = r.end, "offsets_for_times"  # nothing at or after since
        elif tp.error is None and r.start <= tp.offset < r.end:
            candidates[(r.topic, r.partition)] = tp.offset
        elif tp.error is None and tp.offset >= r.end:
            r.start, r.time_seek = r.end, "offsets_for_times"
        else:
            r.time_seek = "scan"
    first = _poll_each(consumer, candidates, timeout_s)
    for r in live:
        key = (r.topic, r.partition)
        if key not in candidates:
            continue
        m = first.get(key)
        if m is not None and m.error() is None and m.timestamp()[1] >= ms:
            r.start, r.time_seek = candidates[key], "offsets_for_times"
        else:
            r.time_seek = "scan"
            log.warning("%s partition %d: the broker's offsets_for_times answer %d is not at or after --since "
                        "(the embedded broker answers 0); scanning from offset %d by message timestamps",
                        r.topic, r.partition, candidates[key], r.start)


def plan(consumer, settings: Settings, options: ReplayOptions) -> dict[str, list[PartitionRange]]:
    """Capture the ends of both topics, then apply the offset and time bounds (see the module contract)."""
    topics = settings.kafka.topics
    names = [topics.traces, topics.frontier_verdicts]
    named = {b.topic for b in options.from_offsets + options.to_offsets if b.topic}
    if named - set(names):
        raise ReplayError(f"offset bounds name {sorted(named - set(names))}; replay reads {names[0]} and {names[1]}")
    ends = capture_ends(consumer, names)
    for r in ends.values():
        lo, hi = _bound(options.from_offsets, r, topics.traces), _bound(options.to_offsets, r, topics.traces)
        if r.topic != topics.traces:  # unnamed bounds select traces; the verdicts topic is read whole unless named
            lo = lo if any(b.topic == r.topic for b in options.from_offsets) else None
            hi = hi if any(b.topic == r.topic for b in options.to_offsets) else None
        r.start = min(max(r.low, lo if lo is not None else r.low), r.end)
        r.end = max(r.start, min(r.end, hi if hi is not None else r.end))
    by_topic = {name: [r for r in ends.values() if r.topic == name] for name in names}
    if options.since is not None:
        _seek_since(consumer, by_topic[topics.traces], options.since, timeout_s=10.0)
    return by_topic


def read(consumer, ranges: list[PartitionRange], idle_timeout_s: float, on_message: Callable[[int], None]
         ) -> Iterator[Any]:
    """The messages of each range, in offset order per partition, stopping exactly at each captured end."""
    from confluent_kafka import TopicPartition

    pending = {(r.topic, r.partition): r for r in ranges if r.size}
    for r in ranges:
        r.done = not r.size
    if not pending:
        return
    consumer.assign([TopicPartition(t, p, r.start) for (t, p), r in pending.items()])

    def finish(key) -> None:
        pending.pop(key).done = True
        consumer.pause([TopicPartition(*key)])

    last_progress = time.monotonic()
    try:
        while pending:
            batch = consumer.consume(num_messages=500, timeout=0.5)
            if not batch and time.monotonic() - last_progress > idle_timeout_s:
                stuck = ", ".join(f"{t}[{p}] at {r.start + r.read} of end {r.end}" for (t, p), r in pending.items())
                raise ReplayError(f"no progress for {idle_timeout_s:.0f} s on {stuck}; is the broker reachable "
                                  "and the data still retained? (raise --idle-timeout to wait longer)")
            for m in batch:
                key = (m.topic(), m.partition())
                r = pending.get(key)
                if r is None:
                    continue
                last_progress = time.monotonic()
                if m.error() is not None:
                    if m.error().code() != EOF_CODE:
                        raise ReplayError(f"reading {key[0]} partition {key[1]}: {m.error()}")
                    if m.offset() >= r.end:
                        finish(key)
                    continue
                if m.offset() >= r.end:
                    finish(key)
                    continue
                r.read += 1
                on_message(1)
                yield m
                if m.offset() >= r.end - 1:
                    finish(key)
    finally:
        consumer.unassign()


def _gold_rows(settings: Settings) -> list[dict]:
    from judge_engine.failures import retrying_sync
    from streams.clickhouse import connect, describe

    db = settings.clickhouse.database

    def query() -> list[dict]:
        result = connect(settings).query(
            f"SELECT id, kind, criterion, question, answer, answer_a, answer_b, human_label "
            f"FROM {db}.gold_labels FINAL WHERE human_label != ''")
        return [dict(zip(result.column_names, row)) for row in result.result_rows]

    try:
        return retrying_sync(what="reading gold labels", attempts=3)(query)
    except Exception as e:  # one line for the user
        from judge_engine.failures import describe as describe_error

        raise ReplayError(f"cannot read gold labels from {describe(settings)} (database {db}): "
                          f"{describe_error(e)}; run `judgeline migrate`, or pass --no-gold") from e


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_jsonl(rows, path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(row.model_dump_json(exclude_none=True) + "\n")

    _write_atomic(path, write)


def _write_parquet(rows, path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ReplayError("writing Parquet needs pyarrow (pip install pyarrow), or pass --format jsonl") from e
    text, labels = pa.string(), pa.map_(pa.string(), pa.string())
    schema = pa.schema([("id", text), ("source", text), ("kind", text), ("criterion", text), ("question", text),
                        ("answer", text), ("answer_a", text), ("answer_b", text), ("reference", text),
                        ("human_label", text), ("teacher", labels), ("teacher_swapped", labels), ("meta", text),
                        ("label", text), ("label_source", text)])
    records = []
    for row in rows:
        d = row.model_dump(mode="json")
        d["teacher"], d["teacher_swapped"] = list(d["teacher"].items()), list(d["teacher_swapped"].items())
        d["label"], d["label_source"] = row.meta["label"], row.meta["label_source"]
        d["meta"] = json.dumps(d["meta"], ensure_ascii=False)
        records.append(d)
    _write_atomic(path, lambda tmp: pq.write_table(pa.Table.from_pylist(records, schema=schema), tmp))


def replay(settings: Settings, options: ReplayOptions, log_line: Callable[[str], None] = log.info) -> dict:
    """Run one replay (see the module contract) and return its manifest (also written to ``out/manifest.json``)."""
    from confluent_kafka import KafkaException
    from tqdm import tqdm

    from judge_engine.training.replay_dataset import (
        GoldIndex,
        Replayed,
        build_dataset,
        frontier_index,
    )
    from schemas.base import InvalidMessage, parse_json_bytes
    from schemas.trace import Trace
    from schemas.verdict import FrontierVerdict

    kafka = settings.kafka
    group_id = options.group_id or f"judgeline-replay-{uuid.uuid4().hex[:12]}"
    if group_id in (kafka.consumer_group, kafka.frontier_consumer_group):
        raise ReplayError(f"--group-id {group_id} is a live worker's consumer group; replay uses a group of its own "
                          "(omit --group-id for a fresh one)")
    started, started_at = time.monotonic(), datetime.now(timezone.utc)
    gold = GoldIndex(_gold_rows(settings) if options.gold else ())  # first: a missing store fails before the read
    gold_s, read_started = time.monotonic() - started, time.monotonic()
    consumer = _consumer(settings, group_id)
    counts: Counter = Counter()
    try:
        try:
            ranges = plan(consumer, settings, options)
        except KafkaException as e:
            raise ReplayError(f"cannot read offsets from Kafka at {kafka.bootstrap_servers}: {e}") from e
        trace_ranges, verdict_ranges = ranges[kafka.topics.traces], ranges[kafka.topics.frontier_verdicts]
        total = sum(r.size for r in trace_ranges + verdict_ranges)
        log_line(f"replaying {sum(r.size for r in trace_ranges)} messages of {kafka.topics.traces} and "
                 f"{sum(r.size for r in verdict_ranges)} of {kafka.topics.frontier_verdicts} "
                 f"(end offsets captured at {started_at.isoformat(timespec='seconds')}; group {group_id})")
        since_ms = int(options.since.timestamp() * 1000) if options.since else None
        until_ms = int(options.until.timestamp() * 1000) if options.until else None
        replayed: list[Replayed] = []
        with tqdm(total=total, desc="replay", unit="msg", disable=not options.progress, leave=False) as bar:
            for m in read(consumer, trace_ranges, options.idle_timeout_s, bar.update):
                counts["read"] += 1
                ts = m.timestamp()[1]
                if (since_ms is not None and ts < since_ms) or (until_ms is not None and ts > until_ms):
                    counts["out_of_time_range"] += 1
                    continue
                try:
                    trace = parse_json_bytes(Trace, m.value() or b"")
                except InvalidMessage:
                    counts["invalid"] += 1  # a dead letter of the live pipeline; never a training row
                    continue
                when = datetime.fromtimestamp(ts / 1000, tz=timezone.utc) if ts > 0 else None
                replayed.append(Replayed(trace, m.topic(), m.partition(), m.offset(), when))
            wanted = {r.trace.trace_id for r in replayed}
            verdicts: list[FrontierVerdict] = []
            for m in read(consumer, verdict_ranges, options.idle_timeout_s, bar.update):
                counts["frontier_verdicts_read"] += 1
                try:
                    fv = parse_json_bytes(FrontierVerdict, m.value() or b"")
                except InvalidMessage:
                    counts["frontier_verdicts_invalid"] += 1
                    continue
                if fv.trace_id in wanted:
                    verdicts.append(fv)
    finally:
        consumer.close()
    read_s = time.monotonic() - read_started
    frontier = frontier_index(verdicts)
    counts["frontier_verdicts_ok"] = len(frontier)
    counts["gold_labels"] = len(gold)
    dataset = build_dataset(replayed, frontier, gold, swap=options.swap, reference_drop=options.reference_drop)
    counts.update(dataset.counts)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    if "jsonl" in options.formats:
        _write_jsonl(dataset.rows, out / "dataset.jsonl")
        files["jsonl"] = "dataset.jsonl"
    if "parquet" in options.formats:
        _write_parquet(dataset.rows, out / "dataset.parquet")
        files["parquet"] = "dataset.parquet"
    judges = sorted({s.split(":", 1)[1] for s in dataset.label_sources if s.startswith("frontier:")})
    manifest = {
        "created_at": started_at.isoformat(),
        "consumer_group": group_id,
        "bootstrap_servers": kafka.bootstrap_servers,
        "topics": {name: [_range_dict(r) for r in rs] for name, rs in ranges.items()},
        "options": {
            "from_offset": [asdict(b) for b in options.from_offsets],
            "to_offset": [asdict(b) for b in options.to_offsets],
            "since": options.since.isoformat() if options.since else None,
            "until": options.until.isoformat() if options.until else None,
            "swap": options.swap, "reference_drop": options.reference_drop, "formats": list(options.formats),
            "gold": options.gold,
        },
        "counts": {k: counts[k] for k in sorted(counts)},
        "label_sources": dict(sorted(dataset.label_sources.items())),
        "files": files,
        "seconds": {"gold": round(gold_s, 2), "kafka": round(read_s, 2),
                    "total": round(time.monotonic() - started, 2)},
        "train_command": (f"judgeline train --gold {out / 'dataset.jsonl'} --teacher {judges[0] if judges else 'human'}"
                          f" --fallback-human") if "jsonl" in files else None,
    }
    _write_atomic(out / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest


def _range_dict(r: PartitionRange) -> dict:
    return {"partition": r.partition, "start": r.start, "end": r.end, "listed_end": r.listed_end, "low": r.low,
            "read": r.read, "time_seek": r.time_seek}
