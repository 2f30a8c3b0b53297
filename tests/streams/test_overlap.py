"""Judging batch N+1 while batch N is stored: offsets become committable in order and only after their batch is
stored; a full queue stops the consumer; a failed or cancelled delivery acknowledges nothing of its batch or later."""

import asyncio

import pytest
from stream_events import Consumer, delivered, take_events_finally

from streams.app import hold_references
from streams.overlap import InOrderDelivery


class Store:
    """A deliver() whose calls finish only when the test releases them (or fail when told)."""

    def __init__(self):
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Future] = {}

    def gate(self, name: str) -> asyncio.Future:
        return self.gates.setdefault(name, asyncio.get_running_loop().create_future())

    async def deliver(self, name: str) -> None:
        self.started.append(name)
        await self.gate(name)


def batch(consumer: Consumer, *offsets: int) -> list:
    events = [delivered(o, consumer) for o in offsets]
    hold_references(events)
    take_events_finally(events)  # the consumer moves on to the next batch: only our reference is left
    return events


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_batch_is_acknowledged_only_after_its_delivery_and_in_order():
    async def scenario():
        consumer, store = Consumer(), Store()
        delivery = InOrderDelivery(store.deliver, depth=1)
        await delivery.submit(batch(consumer, 1, 2), "n")
        await delivery.submit(batch(consumer, 3, 4), "n+1")  # judged while n is still being stored
        await settle()
        assert store.started == ["n"] and consumer.acked == []  # n+1 waits; nothing committable yet
        store.gate("n+1").set_result(None)  # n+1 could finish first: it must not start, let alone be acked
        await settle()
        assert consumer.acked == []
        store.gate("n").set_result(None)
        await delivery.drain()
        assert store.started == ["n", "n+1"] and consumer.acked == [1, 2, 3, 4]
        await delivery.close()

    asyncio.run(scenario())


def test_submit_waits_while_depth_batches_wait_behind_the_one_being_stored():
    async def scenario():
        consumer, store = Consumer(), Store()
        delivery = InOrderDelivery(store.deliver, depth=1)
        await delivery.submit(batch(consumer, 1), "a")
        await settle()  # a is being delivered
        await delivery.submit(batch(consumer, 2), "b")  # b waits in the queue
        third = asyncio.ensure_future(delivery.submit(batch(consumer, 3), "c"))
        await settle()
        assert not third.done()  # the consumer is held: a store that holds stops consumption
        store.gate("a").set_result(None)
        await settle()
        assert third.done() and consumer.acked == [1]
        store.gate("b").set_result(None)
        store.gate("c").set_result(None)
        await delivery.drain()
        assert consumer.acked == [1, 2, 3]
        await delivery.close()

    asyncio.run(scenario())


def test_a_failed_delivery_surfaces_and_acknowledges_nothing_of_its_batch_or_later():
    async def scenario():
        consumer, store = Consumer(), Store()
        delivery = InOrderDelivery(store.deliver, depth=1)
        await delivery.submit(batch(consumer, 1), "ok")
        await delivery.submit(batch(consumer, 2), "bad")
        store.gate("ok").set_result(None)
        store.gate("bad").set_exception(RuntimeError("a bug in storing"))
        await settle()
        with pytest.raises(RuntimeError, match="a bug in storing"):
            await delivery.submit(batch(consumer, 3), "later")
        assert consumer.acked == [1]  # 2 and 3 keep their references: redelivered, never committed
        await delivery.close()

    asyncio.run(scenario())


def test_close_cancels_the_delivery_in_progress_and_leaves_its_batch_unacknowledged():
    async def scenario():
        consumer, store = Consumer(), Store()
        delivery = InOrderDelivery(store.deliver, depth=2)
        await delivery.submit(batch(consumer, 1), "slow")
        await delivery.submit(batch(consumer, 2), "queued")
        await settle()
        await delivery.close()  # worker shutdown while the store holds
        assert store.started == ["slow"] and consumer.acked == []

    asyncio.run(scenario())


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        InOrderDelivery(lambda b: None, depth=0)
