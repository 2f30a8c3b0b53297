"""`judgeline produce`: publish traces to the traces topic, from a gold-format file or OTel GenAI spans (JSONL).

Contract:
- ``traces_from_gold(path)`` yields the ``Trace`` each valid gold item describes (``Trace.from_gold``; the item id,
  with an optional prefix, is the trace id; an optional tenant tells runs of the same file apart) and ``traces_from_otel(path)`` the trace of each span of a JSONL file
  whose lines are single spans (OTLP/JSON or flat) or whole OTLP exports (``{"resourceSpans": [...]}``; the
  resource attributes go with each span). Both yield ``(line number, Trace or InvalidMessage)``: a line that does
  not convert is reported, never silently dropped, and never published (it is not a trace).
- ``produce(settings, messages, rate=...)`` publishes ``(key, value bytes)`` pairs to the traces topic with
  confluent-kafka (acks=all), each keyed by its trace id (one partition per trace) and stamped with the time it
  was produced (the start of the pipeline's produce-to-stored latency); ``rate`` paces the messages per second
  (None: as fast as the broker takes them): never earlier than its schedule, and the messages that fall due while
  the producer sleeps (at least ``PACE_TICK_S``) go out together; a paced producer connects before its clock
  starts. ``linger_ms`` is librdkafka's ``linger.ms`` (default 5): how long messages gather into one request. It
  returns when every message is acknowledged by the broker or has failed, with the counts; a broker that is
  unreachable for ``timeout_s`` is an error. ``on_delivery(partition, offset)``, when given, is called for every
  message the broker acknowledged (the soak benchmark's end offsets).
- ``malformed_messages(n, prefix)`` are ``n`` deliberately bad messages (not JSON, a missing field, bytes that are
  not UTF-8, ...) keyed ``<prefix>bad-<i>``, for showing the dead-letter path.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from schemas.base import InvalidMessage
from schemas.gold import GoldLabel, read_gold_file
from schemas.settings import Settings
from schemas.trace import Trace

log = logging.getLogger("judgeline.produce")

DEFAULT_LINGER_MS = 5  # librdkafka's own default
# a paced producer sleeps at least this long between messages, then sends every message due by then: at thousands
# of messages a second, one sleep per message cost the load generator more CPU than the messages did
PACE_TICK_S = 0.002


def traces_from_gold(path: str | Path, id_prefix: str = "", tenant: str | None = None
                     ) -> Iterator[tuple[int, Trace | InvalidMessage]]:
    overrides = {"tenant": tenant} if tenant else {}
    for number, item in read_gold_file(path):
        if not isinstance(item, GoldLabel):
            yield number, item
            continue
        try:
            yield number, Trace.from_gold(item, trace_id=f"{id_prefix}{item.id}", **overrides)
        except ValueError as e:
            yield number, InvalidMessage("Trace", str(e).replace("\n", " "))


def _spans(document: Any) -> Iterator[dict]:
    if isinstance(document, dict) and "resourceSpans" in document:
        for rs in document.get("resourceSpans") or []:
            resource = rs.get("resource") or {}
            for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
                for span in ss.get("spans") or []:
                    yield {**span, "resource": resource}
    elif isinstance(document, dict):
        yield document
    else:
        raise InvalidMessage("Trace", f"(line): expected a span or an OTLP export object, got {type(document).__name__}")


def traces_from_otel(path: str | Path, id_prefix: str = "") -> Iterator[tuple[int, Trace | InvalidMessage]]:
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                for span in _spans(document):
                    trace = Trace.from_otel_span(span)
                    yield number, trace.model_copy(update={"trace_id": f"{id_prefix}{trace.trace_id}"}) \
                        if id_prefix else trace
            except json.JSONDecodeError as e:
                yield number, InvalidMessage("Trace", f"(line): not JSON ({e.msg})")
            except InvalidMessage as e:
                yield number, e
            except ValueError as e:
                yield number, InvalidMessage("Trace", str(e).replace("\n", " "))


def malformed_messages(n: int, prefix: str = "") -> list[tuple[bytes, bytes]]:
    samples = [
        b"this is not JSON",
        b'{"trace_id": "x", "kind": "pointwise", "question": "q?"}',  # pointwise without an answer
        b"\xff\xfe not UTF-8 \x80",
        b'{"trace_id": "y", "kind": "pairwise", "question": "q?", "answer_a": "a", "answer_b": "b", "colour": 1}',
        b"[1, 2, 3]",
        b'{"trace_id": "has space", "kind": "pointwise", "question": "q?", "answer": "a"}',
    ]
    return [(f"{prefix}bad-{i}".encode(), samples[i % len(samples)]) for i in range(n)]


@dataclass
class ProduceResult:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_error: str | None = None


def produce(settings: Settings, messages: Iterable[tuple[bytes | None, bytes]], *, rate: float | None = None,
            timeout_s: float = 60.0, topic: str | None = None, linger_ms: int = DEFAULT_LINGER_MS,
            on_delivery: Callable[[int, int], None] | None = None) -> ProduceResult:
    from confluent_kafka import KafkaException, Producer

    conf = {**settings.kafka.client_config(), "acks": "all", "linger.ms": linger_ms,
            "message.timeout.ms": int(timeout_s * 1000)}
    producer = Producer(conf, logger=logging.getLogger("judgeline.kafka"))
    topic = topic or settings.kafka.topics.traces
    result = ProduceResult()

    def delivered(err, msg) -> None:
        if err is None:
            result.sent += 1
            if on_delivery is not None:
                on_delivery(msg.partition(), msg.offset())
        else:
            result.failed += 1
            result.first_error = result.first_error or str(err)

    if rate:  # connect and learn the partitions' leaders before the clock starts, as a long-lived client has
        try:
            producer.list_topics(topic, timeout=timeout_s)
        except KafkaException as e:
            raise RuntimeError(f"cannot reach {topic}: {e}") from e
    started = time.monotonic()
    interval = 1.0 / rate if rate else 0.0
    for i, (key, value) in enumerate(messages):
        if interval:
            delay = started + i * interval - time.monotonic()
            if delay > 0:
                producer.poll(0)
                time.sleep(max(delay, PACE_TICK_S))  # the messages that fall due meanwhile go out together
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=int(time.time() * 1000), on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.05)
            except KafkaException as e:
                raise RuntimeError(f"cannot produce to {topic}: {e}") from e
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    result.seconds = time.monotonic() - started
    if remaining:
        result.failed += remaining
        result.first_error = result.first_error or f"{remaining} messages not delivered within {timeout_s} s"
    return result
