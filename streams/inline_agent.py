"""The inline agent: traces topic -> micro-batches -> the Triton judge -> ClickHouse, frontier requests, dead letters.

Contract (thin: the logic is ``judge_engine.online.inline.InlineStage``):
- consumes ``settings.kafka.topics.traces`` as raw bytes, in micro-batches of at most ``stream.batch_size``
  messages gathered within ``stream.batch_within_s`` seconds (``stream.take_events``);
- each batch is processed by ``InlineStage.process`` (validate, judge, route, store, publish), inside
  ``streams.app.acknowledged_after``: the batch's offsets become committable only after ``process`` has returned,
  i.e. after ClickHouse accepted its verdicts and dead letters and the broker its frontier requests. While the
  judge (policy ``hold``) or the store is unavailable, ``process`` holds the batch and the agent consumes nothing;
- ``judge_factory`` replaces the Triton judge (the benchmark's constant-time stub); it is called inside the
  agent, on the worker's event loop.
"""

from __future__ import annotations

from typing import Callable

from judge_engine.online.inline import InlineStage
from schemas.settings import Settings
from streams.app import acknowledged_after, incoming, publisher, source_topic
from streams.sink import ClickHouseStore


def register(app, settings: Settings, judge_factory: Callable[[], object] | None = None):
    store = ClickHouseStore(settings)

    async def inline(stream):
        if judge_factory is None:
            from judge_engine.clients.triton_client import TritonJudge

            judge = TritonJudge(settings.triton)
        else:
            judge = judge_factory()
        stage = InlineStage(settings, judge, store, publisher(app))
        try:
            async for events in stream.take_events(settings.stream.batch_size, within=settings.stream.batch_within_s):
                with acknowledged_after(events):
                    await stage.process([incoming(e) for e in events])
        finally:
            stage.log_stats()
            await judge.close()
            store.close()

    return app.agent(source_topic(app, settings.kafka.topics.traces), name="judgeline-inline")(inline)
