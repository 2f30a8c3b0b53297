"""Fault: one record with an absurd Kafka timestamp in the middle of a stream (issue 12's reproduction).

A CreateTime of 10**15 ms (year 33658) crashed the inline agent outside its guarded path; Faust restarted the agent
and the partition never moved again. Real processes on the private fault stack: the broker, the store server and
``judgeline worker inline`` (constant stub judge). 60 valid traces are produced, the 21st with that timestamp and
another with a negative one: every trace must end with exactly one verdict, the worker alive, and a trace sent
afterwards judged.
"""

from __future__ import annotations

import time

import pytest

from stack import process
from stack.workers import wait_until

pytestmark = pytest.mark.integration


def _produce_with_timestamps(settings, messages: list[tuple[bytes, bytes, int]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({**settings.kafka.client_config(), "acks": "all"})
    failures: list[str] = []
    for key, value, ts in messages:
        producer.produce(settings.kafka.topics.traces, value=value, key=key, timestamp=ts,
                         on_delivery=lambda err, _m: err and failures.append(str(err)))
    assert producer.flush(30) == 0 and failures == [], failures


def test_a_record_with_an_absurd_kafka_timestamp_does_not_stall_the_stream(fault_run, sample_traces):
    run = fault_run(stream={"batch_size": 4, "batch_within_s": 0.05})
    traces = (sample_traces["pairwise"] + sample_traces["pointwise"])[:61]
    now_ms = int(time.time() * 1000)
    stamps = {20: 10**15, 40: -5}  # the record; a negative one (librdkafka treats it as absent)
    worker = run.worker("inline", stub_ms=1)
    _produce_with_timestamps(run.settings, [(t.trace_id.encode(), t.to_bytes(), stamps.get(i, now_ms))
                                            for i, t in enumerate(traces[:60])])
    run.wait_accounted(60, timeout_s=90)
    _produce_with_timestamps(run.settings, [(traces[60].trace_id.encode(), traces[60].to_bytes(), now_ms)])
    run.wait_accounted(61, timeout_s=60)
    run.assert_each_once(traces, [])
    assert process.is_running(worker)
    (produced_at,), = run.rows(f"SELECT produced_at FROM {{db}}.verdicts FINAL WHERE trace_id = '{traces[20].trace_id}'")
    assert produced_at is None or produced_at.year < 2200  # the absurd time never reaches a column
    assert wait_until(lambda: run.count("SELECT count() FROM {db}.verdicts FINAL") == 61, 5)
