"""The Faust app built from settings, and the guard that lets an offset be committed only after its batch is stored."""

from datetime import datetime, timezone

import faust
import pytest
from conftest import make_settings
from faust.types.tuples import ConsumerMessage
from stream_events import Consumer, Event, delivered, take_events_finally

from streams.app import acknowledged_after, create_app, credentials, incoming
from streams.worker import build


def test_offsets_become_committable_only_after_the_batch_body_completes():
    consumer = Consumer()
    events = [delivered(o, consumer) for o in (10, 11)]
    with pytest.raises(ConnectionError):
        with acknowledged_after(events):
            raise ConnectionError("store down")
    take_events_finally(events)
    assert consumer.acked == []  # the failed batch keeps a reference: never committed, redelivered

    retry = [delivered(o, consumer) for o in (10, 11)]
    with acknowledged_after(retry):
        assert consumer.acked == []  # nothing is committable while the batch is being processed
    assert consumer.acked == []  # still referenced by the stream until take_events moves on
    take_events_finally(retry)
    assert consumer.acked == [10, 11]


def test_incoming_keeps_the_raw_bytes_and_the_message_identity():
    event = delivered(42, Consumer())
    m = incoming(event)
    assert (m.value, m.key, m.topic, m.partition, m.offset) == (b"value", b"key", "judgeline.traces", 2, 42)
    assert m.timestamp == datetime.fromtimestamp(1_790_000_000.25, tz=timezone.utc)


@pytest.mark.parametrize("timestamp", [10**15 / 1000 * 1000, 10**15, -1, -1e12, 0, None, float("nan"), float("inf"),
                                       "1790000000", True, 7.3e9, 946_684_799.9])
def test_incoming_never_raises_on_a_hostile_kafka_timestamp(timestamp):
    m = ConsumerMessage("judgeline.traces", 0, 5, timestamp, 0, [(b"h" * 70_000, b"\xff" * 9)], None, b"v", None)
    got = incoming(Event(m, Consumer()))  # a CreateTime of 10**15 ms crashed the agent and stalled the partition
    assert got.timestamp is None and (got.value, got.key, got.offset) == (b"v", None, 5)


def test_incoming_treats_a_key_or_value_that_is_not_bytes_as_absent():
    m = ConsumerMessage("judgeline.traces", 1, 6, 1_790_000_000, 0, [], 12345, bytearray(b"v"), None)
    got = incoming(Event(m, Consumer()))
    assert (got.key, got.value) == (None, b"v") and got.timestamp is not None


def test_app_from_settings(tmp_path):
    s = make_settings(kafka={"bootstrap_servers": "k1:9092, k2:9093", "consumer_group": "g-inline",
                             "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
                      stack={"state_dir": tmp_path}, stream={"worker_web_port": 7001})
    app = create_app(s, "inline")
    conf = app.conf
    assert conf.id == "g-inline" and [str(u) for u in conf.broker] == ["kafka://k1:9092", "kafka://k2:9093"]
    assert conf.broker_session_timeout == 6 and conf.broker_heartbeat_interval == 1
    assert conf.web_bind == "127.0.0.1" and conf.web_port == 7001
    assert conf.consumer_auto_offset_reset == "earliest" and conf.topic_disable_leader
    assert str(conf.datadir).startswith(str(tmp_path))
    assert create_app(s, "frontier").conf.id == s.kafka.frontier_consumer_group
    with pytest.raises(ValueError, match="inline or frontier"):
        create_app(s, "sideways")


def test_credentials_follow_the_security_protocol():
    assert credentials(make_settings().kafka) is None
    sasl = credentials(make_settings(kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                            "sasl_username": "u", "sasl_password": "p"}).kafka)
    assert isinstance(sasl, faust.SASLCredentials) and sasl.username == "u" and sasl.password == "p"
    assert sasl.ssl_context is not None and sasl.mechanism.value == "SCRAM-SHA-512"
    plain = credentials(make_settings(kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
                                             "sasl_password": "p"}).kafka)
    assert plain.ssl_context is None and plain.mechanism.value == "PLAIN"
    assert isinstance(credentials(make_settings(kafka={"security_protocol": "SSL"}).kafka), faust.SSLCredentials)
    with pytest.raises(ValueError, match="OAUTHBEARER"):
        credentials(make_settings(kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}).kafka)


def test_each_worker_registers_its_one_consumer(tmp_path):
    s = make_settings(stack={"state_dir": tmp_path})
    inline = build(s, "inline")  # the default: librdkafka's batch consumer, run as a task; Faust's consumer off
    assert not inline.agents and inline.producer_only
    assert (inline.judgeline_consumer.topic, inline.judgeline_consumer.group) == (s.kafka.topics.traces,
                                                                                   s.kafka.consumer_group)
    assert [t.__name__ for t in inline._app_tasks] == ["judgeline-inline"]
    spans = build(make_settings(stack={"state_dir": tmp_path}, otel={"ingest_spans": True}), "inline")
    assert [t.__name__ for t in spans._app_tasks] == ["judgeline-inline", "judgeline-span-ingest"]
    faust = build(make_settings(stack={"state_dir": tmp_path}, stream={"consumer": "faust"}), "inline")
    assert [a.name for a in faust.agents.values()] == ["judgeline-inline"] and not faust.producer_only
    assert faust.agents["judgeline-inline"].channel.get_topic_name() == s.kafka.topics.traces
    assert not hasattr(faust, "judgeline_consumer")
    frontier = build(s, "frontier")
    assert frontier.agents["judgeline-frontier"].channel.get_topic_name() == s.kafka.topics.frontier_requests
    with pytest.raises(ValueError, match="inline worker only"):
        build(s, "frontier", stub_judge_ms=1)


def test_the_worker_consumer_waits_on_the_broker_at_most_the_configured_fetch_wait(tmp_path):
    import asyncio

    app = create_app(make_settings(stack={"state_dir": tmp_path}, kafka={"fetch_max_wait_ms": 123}), "inline")

    async def created():
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(created()) == 123  # Faust itself fixes 1500 ms
