"""Consumer lag of a consumer group: its committed offsets against a topic's end offsets (read-only).

Contract:
- ``committed_offsets(settings, group, topic)`` returns {partition: committed offset} for every partition of the
  topic; a partition on which the group has committed nothing maps to None. It reads with a confluent-kafka
  consumer that carries the group id but never subscribes, so it neither joins the group nor triggers a rebalance.
- ``end_offsets(settings, topic)`` returns {partition: high watermark} (the offset the next message will get).
  The embedded Tansu broker reports a wrong high watermark (the start of the last batch + 1, see
  ``../shared/docs/platform.md``); callers that know what they produced should prefer their own end offsets
  (``operations.produce.produce(..., on_delivery=...)`` reports each message's partition and offset).
- ``lag(committed, end)`` is the number of messages not yet committed: the sum over partitions of
  ``end - committed`` (``end`` when nothing is committed; never negative).
"""

from __future__ import annotations

import logging
import uuid
from typing import Mapping

from schemas.settings import Settings


def _consumer(settings: Settings, group: str):
    from confluent_kafka import Consumer

    conf = {**settings.kafka.client_config(), "group.id": group, "enable.auto.commit": False,
            "client.id": f"judgeline-lag-{uuid.uuid4().hex[:8]}"}
    return Consumer(conf, logger=logging.getLogger("judgeline.kafka"))


def _partitions(consumer, topic: str, timeout_s: float) -> list[int]:
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise LookupError(f"topic {topic!r} not found on the broker")
    return sorted(meta.partitions)


def committed_offsets(settings: Settings, group: str, topic: str, timeout_s: float = 10.0) -> dict[int, int | None]:
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings, group)
    try:
        parts = [TopicPartition(topic, p) for p in _partitions(consumer, topic, timeout_s)]
        return {tp.partition: (tp.offset if tp.offset >= 0 else None)
                for tp in consumer.committed(parts, timeout=timeout_s)}
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings, f"judgeline-lag-probe-{uuid.uuid4().hex[:8]}")
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
                for p in _partitions(consumer, topic, timeout_s)}
    finally:
        consumer.close()


def lag(committed: Mapping[int, int | None], end: Mapping[int, int]) -> int:
    return sum(max(0, e - (committed.get(p) or 0)) for p, e in end.items())
