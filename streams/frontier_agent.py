"""The frontier agent: frontier-requests topic -> the frontier judge (openai client) -> ClickHouse.

Contract (thin: the logic is ``judge_engine.online.frontier_stage.FrontierStage``):
- consumes ``settings.kafka.topics.frontier_requests`` as raw bytes, in micro-batches of at most
  ``stream.frontier_batch_size`` requests gathered within ``stream.frontier_batch_within_s`` seconds, judged
  concurrently by one ``FrontierJudge`` per worker (so its concurrency, rate limit and spend budget hold for the
  whole process);
- each batch is processed by ``FrontierStage.process`` (judge, compare, store, publish) inside
  ``streams.app.acknowledged_after``: offsets become committable only after the frontier verdicts, disagreements,
  verdicts and dead letters are stored and published; ``recorder`` is told what each batch did
  (``streams.metrics``).
"""

from __future__ import annotations

from judge_engine.online.frontier_stage import FrontierStage
from judge_engine.online.pipeline import NO_RECORDER, Recorder
from schemas.settings import Settings
from streams.app import process_batches, publisher, register_agent, source_topic
from streams.sink import ClickHouseStore


def register(app, settings: Settings, recorder: Recorder = NO_RECORDER):
    store = ClickHouseStore(settings)

    async def frontier(stream):
        from judge_engine.clients.frontier_client import FrontierJudge

        judge = FrontierJudge(settings.frontier)
        stage = FrontierStage(settings, judge, store, publisher(app, settings), recorder=recorder)
        try:
            await process_batches(stream, stage, settings.stream.frontier_batch_size,
                                  settings.stream.frontier_batch_within_s)
        finally:
            await judge.aclose()
            store.close()

    return register_agent(app, source_topic(app, settings.kafka.topics.frontier_requests), "judgeline-frontier", frontier)
