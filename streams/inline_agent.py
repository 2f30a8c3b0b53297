"""The inline agent: traces topic -> micro-batches -> the Triton judge -> ClickHouse, frontier requests, dead letters.

Contract (thin: the logic is ``judge_engine.online.inline.InlineStage``):
- consumes ``settings.kafka.topics.traces`` as raw bytes, in micro-batches of at most ``stream.batch_size``
  messages gathered within ``stream.batch_within_s`` seconds (``stream.take_events``): the batch adapts to the
  backlog, full (the maximum) at once while the worker is behind, and whatever arrived within the window (often
  one trace, after at most ``batch_within_s``) when it is idle, so a large maximum adds no wait at light load;
- each batch is judged by ``InlineStage.prepare`` (validate, judge, route) and then stored and published by
  ``InlineStage.deliver`` on a delivery task of its own (``streams.overlap.InOrderDelivery``), so the judging of
  batch N+1 overlaps the storing and publishing of batch N. At-least-once is kept: each message's extra reference
  is taken as the batch arrives (``streams.app.hold_references``) and released only after ``deliver`` returned,
  i.e. after ClickHouse accepted its verdicts and dead letters and the broker its messages; batches are delivered
  and acknowledged in order. At most ``stream.batches_in_flight`` judged batches wait behind the one being stored:
  while the judge (policy ``hold``) or the store is unavailable the agent holds and consumes nothing more;
- routes under the newest routing policy of the compacted routing-policies topic (``streams.policy_feed.PolicyFeed``,
  started with the agent; before the first batch it waits up to ``routing.policy_wait_s`` to have read the topic to
  its end); a policy published while the worker runs applies from its next batch, without a restart;
- ``judge_factory`` replaces the Triton judge (the benchmark's constant-time stub); it is called inside the
  agent, on the worker's event loop; ``recorder`` is told what each batch did (``streams.metrics``); ``on_batch``
  (the fault suite's hook, ``doubles.faults.crash_on_key``) is called with each batch's events once their
  references are taken, before they are judged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

from judge_engine.online.inline import InlineStage
from judge_engine.online.pipeline import NO_RECORDER, Recorder
from schemas.settings import Settings
from streams.app import hold_references, incoming, publisher, register_agent, source_topic
from streams.overlap import InOrderDelivery
from streams.policy_feed import PolicyFeed
from streams.sink import ClickHouseStore

log = logging.getLogger("judgeline.inline")


def register(app, settings: Settings, judge_factory: Callable[[], object] | None = None,
             recorder: Recorder = NO_RECORDER, on_batch: Callable[[Sequence], None] | None = None):
    store = ClickHouseStore(settings)

    async def inline(stream):
        if judge_factory is None:
            from judge_engine.clients.triton_client import TritonJudge

            judge = TritonJudge(settings.triton)
        else:
            judge = judge_factory()
        feed = PolicyFeed(settings).start()
        stage = InlineStage(settings, judge, store, publisher(app), policy=feed.current, recorder=recorder)
        delivery = InOrderDelivery(stage.deliver, depth=settings.stream.batches_in_flight)
        try:
            if not await asyncio.to_thread(feed.wait_caught_up, settings.routing.policy_wait_s):
                log.warning("the routing policy topic was not read to its end within %.0f s; judging meanwhile "
                            "under policy version %s (routing.without_policy=%s when none)",
                            settings.routing.policy_wait_s, getattr(feed.current(), "version", "none"),
                            settings.routing.without_policy)
            async for events in stream.take_events(settings.stream.batch_size, within=settings.stream.batch_within_s):
                hold_references(events)  # before take_events acknowledges them (when the next batch is asked for)
                if on_batch is not None:
                    on_batch(events)
                batch = await stage.prepare([incoming(e) for e in events])
                await delivery.submit(events, batch)
        finally:
            await delivery.close()
            stage.log_stats()
            feed.stop()
            await judge.close()
            store.close()

    return register_agent(app, source_topic(app, settings.kafka.topics.traces), "judgeline-inline", inline)
