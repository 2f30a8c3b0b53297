"""Judging batch N+1 while batch N is being stored: an in-order delivery task with bounded depth.

Contract:
- ``InOrderDelivery(deliver, depth, acknowledge)``: ``submit(events, batch)`` hands a judged batch to one background
  task that runs ``await deliver(batch)`` for the batches in the order they were submitted, one at a time, and only
  after ``deliver`` has returned calls ``acknowledge(events)``: by default ``streams.app.acknowledge`` (releases the
  references on Faust events), for the batch consumer ``streams.batch_consumer.BatchConsumer.done`` (stores the
  offsets to commit). So an offset becomes committable only after its rows are stored and its messages published,
  and offsets become committable in order.
- With Faust events, the caller must have taken the references (``streams.app.hold_references``) before the
  consumer could acknowledge the events itself (Faust's ``take_events`` does so when the next batch is asked for).
- At most ``depth`` batches wait behind the one being delivered: ``submit`` waits while the queue is full, so a
  store or broker that holds (``pipeline.hold``) stops consumption after ``depth + 1`` batches, as before.
- A failure of ``deliver`` (anything but holding, which never fails) ends the task; the next ``submit`` (or
  ``drain``) raises it, and nothing of that batch or any later one is acknowledged (they are redelivered).
- ``drain()`` waits until every submitted batch is delivered; ``close()`` cancels the task: batches not yet
  delivered keep their references, are never committed and are redelivered to whoever consumes next.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Awaitable, Callable, Sequence

from streams.app import acknowledge


class InOrderDelivery:
    def __init__(self, deliver: Callable[[Any], Awaitable[Any]], depth: int = 1,
                 acknowledge: Callable[[Sequence], None] = acknowledge):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._deliver, self._acknowledge = deliver, acknowledge
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=depth)
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            events, batch = await self._queue.get()
            try:
                await self._deliver(batch)
                self._acknowledge(events)
            finally:
                self._queue.task_done()

    def _check(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # raises the delivery's error (or CancelledError)
            raise RuntimeError("the delivery task stopped")

    async def submit(self, events: Sequence, batch: Any) -> None:
        self._check()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        put = asyncio.ensure_future(self._queue.put((events, batch)))
        try:
            await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        self._check()

    async def drain(self) -> None:
        if self._task is None:
            return
        join = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait({join, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            join.cancel()
        self._check()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
