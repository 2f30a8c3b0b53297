"""The span-ingest agent: the OpenTelemetry Collector's Kafka topic -> traces on judgeline's traces topic.

Contract (thin: the logic is ``judge_engine.online.span_ingest.SpanIngestStage``):
- registered in the inline worker when ``otel.ingest_spans`` is true; consumes ``otel.spans_topic`` as raw bytes
  in micro-batches of at most ``stream.batch_size`` messages within ``stream.batch_within_s`` seconds, in the
  inline worker's consumer group, through ``stream.consumer`` as the inline agent does (a ``BatchConsumer`` of its
  own in that group, or a Faust agent);
- each batch goes through ``SpanIngestStage.process`` inside ``streams.app.acknowledged_after`` (or is marked done
  after it: ``streams.batch_consumer.run_in_turn``): the collector's offsets become committable only after the batch's traces and dead letters are published (and the dead letters
  stored); the inline agent then judges the traces like any other.
"""

from __future__ import annotations

from judge_engine.online.pipeline import NO_RECORDER, Recorder
from judge_engine.online.span_ingest import SpanIngestStage
from schemas.settings import Settings
from streams.app import (
    process_batches,
    publisher,
    register_agent,
    register_task,
    source_topic,
)
from streams.batch_consumer import BatchConsumer, run_in_turn
from streams.sink import ClickHouseStore


def register(app, settings: Settings, recorder: Recorder = NO_RECORDER):
    store = ClickHouseStore(settings)
    size, within = settings.stream.batch_size, settings.stream.batch_within_s

    def stage() -> SpanIngestStage:
        return SpanIngestStage(settings, None, store, publisher(app, settings), recorder=recorder)

    if settings.stream.consumer == "librdkafka":
        async def batched() -> None:
            consumer = BatchConsumer(settings, settings.otel.spans_topic, settings.kafka.consumer_group, "spans")
            await consumer.start()
            try:
                await run_in_turn(consumer, stage().process, size, within)
            finally:
                await consumer.close()
                store.close()

        return register_task(app, "judgeline-span-ingest", batched)

    async def ingest(stream):
        try:
            await process_batches(stream, stage(), size, within)
        finally:
            store.close()

    return register_agent(app, source_topic(app, settings.otel.spans_topic), "judgeline-span-ingest", ingest)
