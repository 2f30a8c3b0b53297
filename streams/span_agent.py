"""The span-ingest agent: the OpenTelemetry Collector's Kafka topic -> traces on judgeline's traces topic.

Contract (thin: the logic is ``judge_engine.online.span_ingest.SpanIngestStage``):
- registered in the inline worker when ``otel.ingest_spans`` is true; consumes ``otel.spans_topic`` as raw bytes
  in micro-batches of at most ``stream.batch_size`` messages within ``stream.batch_within_s`` seconds, in the
  inline worker's consumer group;
- each batch goes through ``SpanIngestStage.process`` inside ``streams.app.acknowledged_after``: the collector's
  offsets become committable only after the batch's traces and dead letters are published (and the dead letters
  stored); the inline agent then judges the traces like any other.
"""

from __future__ import annotations

from judge_engine.online.pipeline import NO_RECORDER, Recorder
from judge_engine.online.span_ingest import SpanIngestStage
from schemas.settings import Settings
from streams.app import process_batches, publisher, register_agent, source_topic
from streams.sink import ClickHouseStore


def register(app, settings: Settings, recorder: Recorder = NO_RECORDER):
    store = ClickHouseStore(settings)

    async def ingest(stream):
        stage = SpanIngestStage(settings, None, store, publisher(app), recorder=recorder)
        try:
            await process_batches(stream, stage, settings.stream.batch_size, settings.stream.batch_within_s)
        finally:
            store.close()

    return register_agent(app, source_topic(app, settings.otel.spans_topic), "judgeline-span-ingest", ingest)
