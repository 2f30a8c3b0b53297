"""streams.app.publisher (librdkafka's producer) against the real broker: nothing about a message changes: every
message arrives once, a key keeps the partition Kafka's partitioner gives it (the same as Faust's aiokafka producer,
so keys published before and after the change stay on their partitions), each key's messages keep their order, and a
message larger than a producer batch (a dead letter holding a long raw message) is published too; a broker that does
not answer fails the publish within ``kafka.publish_timeout_s`` (the stage then holds and publishes again)."""

import asyncio
import json
import time
import uuid

import pytest

from judge_engine.online.pipeline import Outbox
from schemas.settings import Settings
from stack.topics import ensure_topics
from streams.app import create_app, publisher

pytestmark = pytest.mark.integration


def _read(settings: Settings, topic: str, expected: int) -> list[tuple[int, bytes | None, bytes]]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"read-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[tuple[int, bytes | None, bytes]] = []
        deadline = time.monotonic() + 30
        while len(out) < expected and time.monotonic() < deadline:
            out += [(m.partition(), m.key(), m.value()) for m in consumer.consume(500, timeout=0.5) if not m.error()]
        return out
    finally:
        consumer.close()


def test_the_publisher_keeps_each_keys_partition_and_order_and_publishes_big_messages(stack, tmp_path):
    topic = f"judgeline.publish-test.{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(update={
        "stack": stack.stack.model_copy(update={"state_dir": tmp_path}),
        "kafka": stack.kafka.model_copy(update={
            "topics": stack.kafka.topics.model_copy(update={"traces": topic, "partitions": 4})})})
    ensure_topics(settings)
    outbox = Outbox()
    for i in range(600):  # 37 keys over 4 partitions, each key's messages interleaved with the others'
        outbox.add(topic, f"trace-{i % 37}", json.dumps({"seq": i, "pad": "x" * 300}).encode())
    big = b"y" * 700_000  # over the producer's 16 KB batch: a batch of its own
    outbox.add(topic, "big", big)
    outbox.add(topic, None, b"no key")

    async def publish() -> dict[str, int]:
        app = create_app(settings, "inline")
        try:
            await publisher(app, settings)(outbox)
            producer = await app.maybe_start_producer()  # aiokafka's partitioner, for comparison
            return {key: producer.key_partition(topic, key.encode()).partition
                    for key in {f"trace-{i % 37}" for i in range(600)} | {"big"}}
        finally:
            app.judgeline_producer.close()
            await app.producer.stop()

    expected_partition = asyncio.run(publish())
    got = _read(settings, topic, len(outbox))
    assert len(got) == len(outbox)
    assert sorted(v for _, _, v in got) == sorted(v for _, _, v in outbox.messages)  # each once, unchanged
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for partition, key, value in got:
        if key is not None and key != b"big":
            by_key.setdefault(key, []).append((partition, json.loads(value)["seq"]))
    assert len({p for messages in by_key.values() for p, _ in messages}) > 1  # the keys did spread
    for key, messages in by_key.items():
        assert {p for p, _ in messages} == {expected_partition[key.decode()]}  # the partitioner's partition
        assert [s for _, s in messages] == sorted(s for _, s in messages)  # in the order published
    assert [(p, v) for p, k, v in got if k == b"big"] == [(expected_partition["big"], big)]


def test_a_publish_to_a_broker_that_does_not_answer_fails_within_the_publish_timeout(tmp_path):
    import socket

    from confluent_kafka import KafkaException

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(stack={"state_dir": tmp_path}, kafka={"bootstrap_servers": f"127.0.0.1:{port}",
                                                                "publish_timeout_s": 1.0})
    outbox = Outbox()
    outbox.add("judgeline.nowhere", "k", b"v")

    async def publish() -> float:
        app = create_app(settings, "inline")
        started = time.monotonic()
        try:
            with pytest.raises(KafkaException):
                await publisher(app, settings)(outbox)
            return time.monotonic() - started
        finally:
            app.judgeline_producer.close(timeout_s=0.1)

    assert asyncio.run(publish()) < 10
