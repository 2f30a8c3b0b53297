"""streams.batch_consumer against the real broker: records arrive as ``Incoming`` with every Kafka field checked,
only what was marked done is committed (a new member of the group starts right after it and redelivers the rest),
and a member held for longer than its max poll interval stays in its group and loses nothing."""

import asyncio
import time
import uuid

import pytest

from schemas.settings import Settings
from stack.topics import ensure_topics
from streams.batch_consumer import BatchConsumer

pytestmark = pytest.mark.integration


def _settings(stack, tmp_path, partitions: int = 2, **kafka) -> Settings:
    topic = f"judgeline.batch-consumer-test.{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(update={
        "stack": stack.stack.model_copy(update={"state_dir": tmp_path}),
        "kafka": stack.kafka.model_copy(update={
            **kafka, "topics": stack.kafka.topics.model_copy(update={"traces": topic, "partitions": partitions})})})
    ensure_topics(settings)
    return settings


def _produce(settings: Settings, records: list[tuple[bytes | None, bytes | None, int | None]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({**settings.kafka.client_config(), "acks": "all"})
    for key, value, timestamp_ms in records:
        producer.produce(settings.kafka.topics.traces, value=value, key=key,
                         **({"timestamp": timestamp_ms} if timestamp_ms is not None else {}))
    assert producer.flush(30) == 0


async def _take_all(consumer: BatchConsumer, n: int, timeout_s: float = 60) -> list:
    out: list = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += await consumer.take(100, 0.2)
    return out


def _committed(settings: Settings, group: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.kafka.topics.traces
    probe = Consumer({**settings.kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        return {tp.partition: tp.offset for tp in probe.committed([TopicPartition(topic, p) for p in partitions],
                                                                  timeout=10)}
    finally:
        probe.close()


def test_records_arrive_checked_and_only_what_was_marked_done_is_committed(stack, tmp_path):
    settings = _settings(stack, tmp_path)
    group = f"bc-{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    records = [(f"k{i}".encode(), f'{{"i": {i}}}'.encode(), now_ms) for i in range(40)]
    records += [(b"absurd-time", b'{"i": "t"}', 10**15), (None, None, now_ms)]  # CreateTime in year 33658; a tombstone
    _produce(settings, records)

    async def first_member() -> list:
        consumer = await BatchConsumer(settings, settings.kafka.topics.traces, group).start()
        try:
            got = await _take_all(consumer, len(records))
            by_partition: dict[int, list] = {}
            for m in got:
                by_partition.setdefault(m.partition, []).append(m)
            # mark done the first half of each partition only, as a worker that stored that much and then stopped
            consumer.done([m for ms in by_partition.values() for m in ms[:len(ms) // 2]])
            return got
        finally:
            await consumer.close()  # commits what was marked done, and nothing else

    got = asyncio.run(first_member())
    assert len(got) == len(records) and len({(m.partition, m.offset) for m in got}) == len(records)
    absurd = next(m for m in got if m.key == b"absurd-time")
    assert absurd.timestamp is None  # no datetime that cannot be stored reaches the stage
    tombstone = next(m for m in got if m.key is None)
    assert tombstone.value is None
    assert all(m.timestamp is not None and abs(m.timestamp.timestamp() * 1000 - now_ms) < 1000
               for m in got if m.key not in (b"absurd-time",))
    halves = {}
    for m in got:
        halves.setdefault(m.partition, []).append(m.offset)
    expected = {p: sorted(offsets)[len(offsets) // 2 - 1] + 1 for p, offsets in halves.items() if len(offsets) >= 2}
    committed = _committed(settings, group)
    assert {p: committed[p] for p in expected} == expected

    async def second_member() -> list:
        consumer = await BatchConsumer(settings, settings.kafka.topics.traces, group).start()
        try:
            return await _take_all(consumer, len(records) - sum(len(o) // 2 for o in halves.values()))
        finally:
            await consumer.close()

    again = asyncio.run(second_member())
    assert sorted((m.partition, m.offset) for m in again) == sorted(
        (p, o) for p, offsets in halves.items() for o in sorted(offsets)[len(offsets) // 2:])


def test_a_member_held_longer_than_its_max_poll_interval_stays_in_its_group_and_loses_nothing(stack, tmp_path):
    settings = _settings(stack, tmp_path, partitions=2, session_timeout_ms=3000, heartbeat_interval_ms=1000,
                         max_poll_interval_s=3.0, commit_interval_s=0.2)
    group = f"bc-{uuid.uuid4().hex[:8]}"
    _produce(settings, [(f"a{i}".encode(), b"{}", None) for i in range(10)])

    async def run() -> tuple[list, list, list[bool]]:
        consumer = await BatchConsumer(settings, settings.kafka.topics.traces, group).start()
        try:
            before = await _take_all(consumer, 10)
            readiness: list[bool] = []

            async def hold() -> None:  # a store that is down for three max poll intervals
                for _ in range(18):
                    await asyncio.sleep(0.5)
                    readiness.append(consumer.ready())
                await asyncio.to_thread(_produce, settings, [(f"b{i}".encode(), b"{}", None) for i in range(10)])

            await consumer.held(hold())
            consumer.done(before)
            after = await _take_all(consumer, 10)
            consumer.done(after)
            await asyncio.sleep(1)  # two auto-commit intervals
            return before, after, readiness
        finally:
            await consumer.close()

    before, after, readiness = asyncio.run(run())
    assert len(before) == 10 and all(readiness), "the member left its group (or was rebalanced) during the hold"
    assert sorted(m.key for m in after) == sorted(f"b{i}".encode() for i in range(10))  # nothing read twice or lost
    assert sum(_committed(settings, group).values()) == 20
