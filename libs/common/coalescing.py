"""A writer per key that coalesces concurrent requests into one batch.

Requests for the same key (e.g. one company's pool in one currency) wait in a bounded
queue; one worker per key hands everything waiting to the batch handler at once, so a
batch shares one database transaction and one commit. Keys never wait for each other.

Load is shed (RESOURCE_EXHAUSTED) instead of queued without bound: when the queue is
full, and when the caller's deadline would pass before its turn comes (the wait is
estimated from the key's recent pace). A request whose deadline passed while it waited
is answered without being run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from libs.common.errors import DeadlineExceeded, ResourceExhausted

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

BatchHandler = Callable[[K, Sequence[T]], Awaitable[Sequence[R | BaseException]]]


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    deadline: float | None
    future: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Lane(Generic[T, R]):
    """One key's queue, while it has work."""

    queue: deque[_Waiting[T, R]] = field(default_factory=deque)
    pace: float = 0.0  # recent seconds per item
    in_flight: int = 0  # items of the batch being handled

    def expected_wait(self) -> float:
        return (len(self.queue) + self.in_flight) * self.pace


class Coalescer(Generic[K, T, R]):
    """Serializes work per key, in batches."""

    def __init__(
        self, handler: BatchHandler[K, T, R], *, max_batch: int = 256, max_waiting: int = 4096
    ) -> None:
        self._handler = handler
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._lanes: dict[K, _Lane[T, R]] = {}
        self._workers: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: T, time_remaining: float | None = None) -> R:
        """Runs `item` in the next batch of `key`; `time_remaining` is the caller's deadline."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            worker = asyncio.create_task(self._drain(key, lane))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        elif len(lane.queue) >= self._max_waiting:
            raise ResourceExhausted("OVERLOADED", "too many requests waiting; retry later")
        elif time_remaining is not None and lane.expected_wait() > time_remaining:
            raise ResourceExhausted(
                "OVERLOADED", "too busy to answer before the deadline; retry later"
            )
        deadline = None if time_remaining is None else time.monotonic() + time_remaining
        waiting: _Waiting[T, R] = _Waiting(item, deadline)
        lane.queue.append(waiting)
        return await waiting.future

    async def _drain(self, key: K, lane: _Lane[T, R]) -> None:
        queue = lane.queue
        try:
            while queue:
                batch: list[_Waiting[T, R]] = []
                now = time.monotonic()
                while queue and len(batch) < self._max_batch:
                    waiting = queue.popleft()
                    if waiting.future.done():  # the caller went away
                        continue
                    if waiting.deadline is not None and waiting.deadline <= now:
                        waiting.future.set_exception(
                            DeadlineExceeded("DEADLINE_EXCEEDED", "deadline passed while queued")
                        )
                        continue
                    batch.append(waiting)
                if not batch:
                    continue
                lane.in_flight = len(batch)
                started = time.monotonic()
                try:
                    results = await self._handler(key, [w.item for w in batch])
                except BaseException as error:  # the whole batch failed
                    results = [error] * len(batch)
                    if isinstance(error, asyncio.CancelledError):
                        for waiting in batch:  # nobody is left to answer them
                            if not waiting.future.done():
                                waiting.future.cancel()
                        raise
                finally:
                    lane.in_flight = 0
                pace = (time.monotonic() - started) / len(batch)
                lane.pace = pace if not lane.pace else 0.8 * lane.pace + 0.2 * pace
                for waiting, result in zip(batch, results, strict=True):
                    if waiting.future.done():
                        continue
                    if isinstance(result, BaseException):
                        waiting.future.set_exception(result)
                    else:
                        waiting.future.set_result(result)
        finally:
            del self._lanes[key]
            for waiting in queue:
                if not waiting.future.done():
                    waiting.future.cancel()

    async def close(self) -> None:
        """Waits for the batches in flight."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)
