"""Publishing a stage's outbox with librdkafka (confluent-kafka) instead of Faust's aiokafka producer.

Contract:
- ``BatchProducer(settings, name)`` is one librdkafka producer configured from ``settings.kafka`` (broker and
  credentials), with ``acks=all``, Kafka's own key partitioner (``murmur2_random``: a key gets the partition the Java
  client and aiokafka give it; a message without a key goes to any partition), and at most one request in flight
  per connection, so a retry never reorders a partition's messages.
- ``await publish(outbox)`` hands every message of a ``judge_engine.online.pipeline.Outbox`` to librdkafka in order
  (``produce``: batching, compression and the network happen on librdkafka's own threads, outside the GIL) and
  returns once the broker has acknowledged every one of them. If any message could not be delivered within
  ``kafka.publish_timeout_s`` (librdkafka's ``message.timeout.ms``; the broker down or refusing) it raises
  ``KafkaException`` after all of them are settled: the stage holds (``pipeline.hold``) and publishes the whole
  outbox again (at-least-once: messages that did arrive are sent twice, never lost). A full local queue waits for
  room instead of failing.
- ``connect(topics, timeout_s)`` connects and fetches those topics' metadata ahead of the first publish (a worker's
  warm-up).
- Delivery reports are served by one daemon thread of the producer's own (``poll``); it resolves each publish on the
  event loop that awaits it. ``close(timeout_s)`` flushes what is still queued and stops that thread. A publish
  returns only when its messages are acknowledged, so nothing a stage published is left in the queue at exit.
- Measured (issue 13, ``benchmarks.throughput``): aiokafka's batch API cost the inline worker about 105 us of CPU
  per trace for its two messages (a verdict and a frontier request); see docs/benchmarks.md for librdkafka's.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from confluent_kafka import KafkaError, KafkaException, Producer

from judge_engine.online.pipeline import Outbox
from schemas.settings import Settings

log = logging.getLogger("judgeline.producer")


class BatchProducer:
    POLL_S = 0.1
    FULL_QUEUE_WAIT_S = 0.005

    def __init__(self, settings: Settings, name: str = "stage"):
        kafka = settings.kafka
        self._producer = Producer({
            **kafka.client_config(), "client.id": f"judgeline-{name}", "acks": "all",
            "partitioner": "murmur2_random", "max.in.flight.requests.per.connection": 1,
            "linger.ms": 5, "message.timeout.ms": max(1, int(kafka.publish_timeout_s * 1000)),
            "logger": logging.getLogger("judgeline.librdkafka"),
        })
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"judgeline-producer-{name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(self.POLL_S)  # runs the delivery callbacks of every publish

    async def publish(self, outbox: Outbox) -> None:
        if self._closed.is_set():
            raise RuntimeError("the producer is closed")
        messages = outbox.messages
        if not messages:
            return
        loop = asyncio.get_running_loop()
        settled = loop.create_future()
        left = [len(messages)]
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg) -> None:  # on the poll thread
            if err is not None:
                errors.append(err)
            left[0] -= 1
            if left[0] == 0:
                loop.call_soon_threadsafe(lambda: settled.done() or settled.set_result(None))

        produce = self._producer.produce
        for topic, key, value in messages:
            while True:
                try:
                    produce(topic, value, key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: the poll thread frees it as reports arrive
                    await asyncio.sleep(self.FULL_QUEUE_WAIT_S)
        await settled
        if errors:
            log.warning("%d of %d messages were not delivered; first: %s", len(errors), len(messages), errors[0])
            raise KafkaException(errors[0])

    def connect(self, topics: list[str], timeout_s: float) -> None:
        """Connect to the broker and learn the leaders of ``topics`` now, so the first publish does not wait for
        them (``streams.app.warm_up``); raises ``KafkaException`` when the broker does not answer in time."""
        for topic in topics:
            self._producer.list_topics(topic, timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._closed.is_set():
            return
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("%d messages were still queued when the producer closed", left)
        self._closed.set()
        self._thread.join(timeout=self.POLL_S * 5)
