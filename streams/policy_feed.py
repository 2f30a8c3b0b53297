"""The inline worker's view of the routing policy: the newest policy of its scope on the compacted
``routing-policies`` topic, applied without a restart (docs/routing.md).

Contract:
- ``PolicyFeed(settings)`` reads ``settings.kafka.topics.routing_policies`` from the beginning of every partition
  (assigned, no consumer group, nothing committed: every worker reads the whole compacted topic, so the newest
  policy reaches a worker that starts after it was published) in a background thread with confluent-kafka
  (``KafkaSettings.client_config``: the same credentials as every other client), and keeps tailing it.
- ``offer(key, value)`` is what the thread does with each message: a message whose key is not the worker's scope
  (``routing.policy_scope``) is ignored; a tombstone or a value that is not a valid ``RoutingPolicy`` JSON is
  logged as an error naming the field and the offset (the message stays on the topic: nothing is lost, and the
  worker keeps the policy it had); a valid policy replaces the current one only when its version is higher (a
  replayed or out-of-order older version never rolls a worker back). Returns True when the policy changed.
- ``current()`` is the newest policy so far, or None (the inline stage then routes by ``routing.without_policy``).
  The inline stage asks once per batch, so a new policy applies from the next batch.
- ``start()`` starts the thread; ``wait_caught_up(timeout_s)`` waits until the thread has read up to the end the
  topic had when it started (the high watermarks; an empty topic is caught up at once) and returns whether it did:
  the worker waits ``routing.policy_wait_s`` for that before judging, so it does not route its first batches under
  no policy when one exists. A missing topic is looked for again every second (logged once), never an error.
- ``stop()`` ends the thread and closes the consumer (the worker's shutdown).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Callable

from schemas.settings import Settings

if TYPE_CHECKING:
    from judge_engine.online.policy import RoutingPolicy

log = logging.getLogger("judgeline.policy_feed")


class PolicyFeed:
    def __init__(self, settings: Settings, consumer_factory: Callable[[dict], object] | None = None):
        self.settings = settings
        self.topic = settings.kafka.topics.routing_policies
        self.scope = settings.routing.policy_scope
        self._consumer_factory = consumer_factory
        self._policy: "RoutingPolicy | None" = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the policy ------------------------------------------------------------------------------------------------

    def current(self) -> "RoutingPolicy | None":
        return self._policy

    def offer(self, key: bytes | None, value: bytes | None, where: str = "") -> bool:
        from judge_engine.online.policy import RoutingPolicy

        if (key or b"").decode("utf-8", "replace") != self.scope:
            return False
        if value is None:
            log.error("routing policy message %s is a tombstone; the worker keeps policy version %s (publish a "
                      "policy with `judgeline route-policy update`)", where, self._version())
            return False
        try:
            policy = RoutingPolicy.from_json(value)
        except ValueError as e:
            log.error("routing policy message %s is invalid: %s; the worker keeps policy version %s", where, e,
                      self._version())
            return False
        with self._lock:
            if self._policy is not None and policy.version <= self._policy.version:
                return False
            self._policy = policy
        log.info("routing policy version %d of scope %s applies from the next batch (%d rules)", policy.version,
                 self.scope, len(policy.rules))
        return True

    def _version(self) -> str:
        return "none" if self._policy is None else str(self._policy.version)

    # -- the thread ------------------------------------------------------------------------------------------------

    def start(self) -> "PolicyFeed":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="judgeline-policy-feed", daemon=True)
            self._thread.start()
        return self

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _consumer(self):
        conf = {**self.settings.kafka.client_config(),
                # a group id librdkafka requires; assign() never joins it and nothing is committed
                "group.id": f"{self.settings.kafka.consumer_group}-policy-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False, "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest"}
        if self._consumer_factory is not None:
            return self._consumer_factory(conf)
        from confluent_kafka import Consumer

        return Consumer(conf, logger=logging.getLogger("judgeline.kafka"))

    def _run(self) -> None:
        try:
            consumer = self._consumer()
        except Exception:  # noqa: BLE001 - the worker goes on under the no-policy routing
            log.exception("cannot create the routing policy consumer; routing stays %s",
                          self.settings.routing.without_policy)
            self._caught_up.set()
            return
        try:
            ends = self._assign(consumer)
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
                    self.offer(message.key(), message.value(), where)
                elif message is not None:
                    log.warning("routing policy consumer: %s", message.error())
                if ends:
                    ends = self._unread(consumer, ends)
                if not ends:
                    self._caught_up.set()
        except Exception:  # noqa: BLE001 - a broken feed must not kill the inline worker; it keeps its policy
            log.exception("the routing policy feed stopped; the worker keeps policy version %s", self._version())
            self._caught_up.set()
        finally:
            consumer.close()

    def _unread(self, consumer, ends: dict[int, int]) -> dict[int, int]:
        """The partitions whose fetch position is still below the end they had at start (the position, not the last
        offset seen: a compacted log or a control record leaves gaps in offsets)."""
        from confluent_kafka import TopicPartition

        positions = consumer.position([TopicPartition(self.topic, p) for p in ends])
        return {tp.partition: ends[tp.partition] for tp in positions if tp.offset < ends[tp.partition]}

    def _assign(self, consumer) -> dict[int, int]:
        """Assign every partition of the topic from the beginning; returns {partition: end offset} still to read."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        warned = False
        while not self._stop.is_set():
            meta = consumer.list_topics(self.topic, timeout=5.0).topics.get(self.topic)
            if meta is not None and meta.error is None and meta.partitions:
                break
            if not warned:
                log.warning("topic %s not found; routing by %s until it exists and holds a policy (create it with "
                            "`judgeline topics create`)", self.topic, self.settings.routing.without_policy)
                warned = True
                self._caught_up.set()  # nothing to wait for
            self._stop.wait(1.0)
        else:
            return {}
        partitions = sorted(meta.partitions)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5.0)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        return ends
