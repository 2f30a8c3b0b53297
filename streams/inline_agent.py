"""The inline agent: traces topic -> micro-batches -> the Triton judge -> ClickHouse, frontier requests, dead letters.

Contract (thin: the logic is ``judge_engine.online.inline.InlineStage``):
- consumes ``settings.kafka.topics.traces`` as raw bytes in the group ``kafka.consumer_group``, through
  ``stream.consumer``: librdkafka's batch consumer (``streams.batch_consumer``, run as an app task, offsets stored
  for commit once delivered) or Faust's stream (an agent, ``stream.take_events``); the guarantees below hold for both.
- micro-batches of at most ``stream.batch_size`` messages gathered within ``stream.batch_within_s`` seconds: the
  batch adapts to the backlog, full (the maximum) at once while the worker is behind, and whatever arrived within
  the window (often one trace, after at most ``batch_within_s``) when it is idle, so a large maximum adds no wait at
  light load;
- each batch is judged by ``InlineStage.prepare`` (validate, judge, route) and then stored and published by
  ``InlineStage.deliver`` on a delivery task of its own (``streams.overlap.InOrderDelivery``), so the judging of
  batch N+1 overlaps the storing and publishing of batch N. At-least-once is kept: a batch is acknowledged (Faust:
  each message's extra reference, taken as the batch arrives by ``streams.app.hold_references``, released;
  librdkafka: its offsets stored for commit) only after ``deliver`` returned, i.e. after ClickHouse accepted its
  verdicts and dead letters and the broker its messages; batches are delivered and acknowledged in order. At most ``stream.batches_in_flight`` judged batches wait behind the one being stored:
  while the judge (policy ``hold``) or the store is unavailable the agent holds and consumes nothing more (the batch
  consumer pauses its partitions and keeps polling, so it stays in its group: ``BatchConsumer.held``);
- routes under the newest routing policy of the compacted routing-policies topic (``streams.policy_feed.PolicyFeed``,
  started with the agent; before the first batch it waits up to ``routing.policy_wait_s`` to have read the topic to
  its end) and meanwhile connects its store and producer (``streams.app.warm_up``); a policy published while the
  worker runs applies from its next batch, without a restart;
- shadow mode (``settings.shadow.version`` set): a second Triton client on the candidate's model
  (``judge_engine.online.shadow.shadow_judge``) scores each batch beside the live judge; its rows are stored with the
  batch (``InlineStage``), its failures only counted;
- ``judge_factory`` replaces the Triton judge (the benchmark's constant-time stub); it is called inside the
  agent, on the worker's event loop; ``recorder`` is told what each batch did (``streams.metrics``); ``on_batch``
  (the fault suite's hook, ``doubles.faults.crash_on_key``) is called with each batch's records (``Incoming``)
  once they are held unacknowledged, before they are judged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence

from judge_engine.online.inline import InlineStage
from judge_engine.online.pipeline import NO_RECORDER, Recorder, Rows
from judge_engine.online.shadow import ShadowScorer, shadow_judge
from schemas.settings import Settings
from streams.app import (
    hold_references,
    incoming,
    publisher,
    register_agent,
    register_task,
    source_topic,
    warm_up,
)
from streams.batch_consumer import BatchConsumer, run_overlapped
from streams.overlap import InOrderDelivery
from streams.policy_feed import PolicyFeed
from streams.sink import ClickHouseStore

log = logging.getLogger("judgeline.inline")


def register(app, settings: Settings, judge_factory: Callable[[], object] | None = None,
             recorder: Recorder = NO_RECORDER, on_batch: Callable[[Sequence], None] | None = None):
    store = ClickHouseStore(settings)

    async def judging(consume: Callable[[InlineStage], Awaitable[None]]) -> None:
        """Build the stage (judge, shadow, policy feed) and run ``consume(stage)``; release everything after."""
        if judge_factory is None:
            from judge_engine.clients.triton_client import TritonJudge

            judge = TritonJudge(settings.triton)
        else:
            judge = judge_factory()
        candidate = shadow_judge(settings)  # shadow mode: None when settings.shadow.version is empty
        shadow = ShadowScorer(candidate, settings.shadow.timeout_s) if candidate is not None else None
        if shadow is not None:
            log.info("shadow mode: every batch is also scored by %s version %s (stored apart in shadow_verdicts)",
                     settings.shadow_model_name, settings.shadow.version)
        feed = PolicyFeed(settings).start()
        stage = InlineStage(settings, judge, store, publisher(app, settings), policy=feed.current, recorder=recorder,
                            shadow=shadow)
        try:
            caught_up, _ = await asyncio.gather(
                asyncio.to_thread(feed.wait_caught_up, settings.routing.policy_wait_s),
                warm_up(app, settings, store, list(Rows().tables()), settings.kafka.topics.names()))
            if not caught_up:
                log.warning("the routing policy topic was not read to its end within %.0f s; judging meanwhile "
                            "under policy version %s (routing.without_policy=%s when none)",
                            settings.routing.policy_wait_s, getattr(feed.current(), "version", "none"),
                            settings.routing.without_policy)
            await consume(stage)
        finally:
            stage.log_stats()
            feed.stop()
            await judge.close()
            if shadow is not None:
                await shadow.close()
            store.close()

    size, within = settings.stream.batch_size, settings.stream.batch_within_s
    depth = settings.stream.batches_in_flight
    if settings.stream.consumer == "librdkafka":
        consumer = BatchConsumer(settings, settings.kafka.topics.traces, settings.kafka.consumer_group, "inline")
        app.judgeline_consumer = consumer  # /ready/ and the lag metric read it (streams.app.consumer_state)

        async def batched(stage: InlineStage) -> None:
            delivery = InOrderDelivery(stage.deliver, depth=depth, acknowledge=consumer.done)
            await consumer.start()
            try:
                await run_overlapped(consumer, stage.prepare, delivery, size, within, on_batch)
            finally:
                await delivery.close()  # batches not yet delivered are never marked done: redelivered
                await consumer.close()

        return register_task(app, "judgeline-inline", lambda: judging(batched))

    async def inline(stream):
        async def faust_events(stage: InlineStage) -> None:
            delivery = InOrderDelivery(stage.deliver, depth=depth)
            try:
                async for events in stream.take_events(size, within=within):
                    hold_references(events)  # before take_events acknowledges them (when the next batch is asked for)
                    messages = [incoming(e) for e in events]
                    if on_batch is not None:
                        on_batch(messages)
                    await delivery.submit(events, await stage.prepare(messages))
            finally:
                await delivery.close()

        await judging(faust_events)

    return register_agent(app, source_topic(app, settings.kafka.topics.traces), "judgeline-inline", inline)
