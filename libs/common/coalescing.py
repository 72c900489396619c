"""A writer per key that coalesces concurrent requests into one batch.

Requests for the same key (e.g. one company's pool in one currency) wait in a bounded
queue; one worker per key hands everything waiting to the batch handler at once, so a
batch shares one database transaction and one commit. Keys never wait for each other.

Load is shed (RESOURCE_EXHAUSTED OVERLOADED, with a retry delay) instead of queued without
bound, and a caller with a deadline is answered before it: a request is refused at once
when the queue is full or when its turn would come too late; a queued request is refused
when its deadline draws near (a timer); a batch takes only the requests it can answer
before they are due. A request in a running batch is answered when the batch ends (its
outcome is not known before).

Waits are estimated from the key's recent batches. A batch costs about as long as the
recent ones whatever its size (the transaction's round trips dominate; a per-request share
would make a long queue after small batches look hopeless and shed everything). A request
waits for the rest of the running batch, one batch per `max_batch` requests ahead of it,
and its own.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from libs.common import metrics
from libs.common.shedding import overloaded

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

BatchHandler = Callable[[K, Sequence[T]], Awaitable[Sequence[R | BaseException]]]

# The answer is due this much before the caller's deadline (a share of its time, at most
# MAX_REPLY_MARGIN): time for the event loop to send the reply before the caller gives up.
REPLY_SHARE = 0.1
MAX_REPLY_MARGIN = 0.1
# Weight of the newest batch in the running mean of batch durations.
RECENT_WEIGHT = 0.2
TOO_LATE = "too busy to answer before the deadline; retry later"


@dataclass(slots=True)
class _Pace:
    """How long a key's batches take lately (a running mean)."""

    batch_seconds: float = 0.0

    def record(self, seconds: float) -> None:
        if not self.batch_seconds:
            self.batch_seconds = seconds
        else:
            self.batch_seconds += RECENT_WEIGHT * (seconds - self.batch_seconds)


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    due: float | None  # loop time by which the answer must be sent
    future: asyncio.Future[R]
    timer: asyncio.TimerHandle | None = None
    queued: bool = True


@dataclass(slots=True)
class _Lane(Generic[T, R]):
    """One key's queue, while it has work."""

    pace: _Pace
    queue: deque[_Waiting[T, R]] = field(default_factory=deque)
    waiting: int = 0  # queued and not answered yet
    in_flight: int = 0  # requests of the batch being handled
    batch_started: float = 0.0

    def expected_wait(self, now: float, max_batch: int) -> float:
        """How long a request queued now waits for its answer."""
        batch = self.pace.batch_seconds
        running = max(batch - (now - self.batch_started), 0.0) if self.in_flight else 0.0
        return running + math.ceil((self.waiting + 1) / max_batch) * batch

    def leave(self, waiting: _Waiting[T, R]) -> bool:
        """Takes `waiting` out of the queue's count; False if it had left already."""
        if not waiting.queued:
            return False
        waiting.queued = False
        self.waiting -= 1
        if waiting.timer is not None:
            waiting.timer.cancel()
        return True


class Coalescer(Generic[K, T, R]):
    """Serializes work per key, in batches."""

    def __init__(
        self,
        handler: BatchHandler[K, T, R],
        *,
        max_batch: int = 256,
        max_waiting: int = 4096,
        name: str = "",
    ) -> None:
        self.name = name  # in metrics (`licensing.writer`); none without one
        self._attributes = {"licensing.writer": name}
        self._handler = handler
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._lanes: dict[K, _Lane[T, R]] = {}
        self._paces: dict[K, _Pace] = {}  # outlive the lanes: a new burst starts informed
        self._workers: set[asyncio.Task[None]] = set()
        metrics.watch_writer(self)

    def depth(self) -> tuple[int, int]:
        """(requests waiting, keys with work)."""
        return sum(lane.waiting for lane in self._lanes.values()), len(self._lanes)

    async def submit(self, key: K, item: T, time_remaining: float | None = None) -> R:
        """Runs `item` in the next batch of `key`; `time_remaining` is the caller's deadline."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(self._paces.setdefault(key, _Pace()))
            worker = loop.create_task(self._drain(key, lane))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        elif lane.waiting >= self._max_waiting:
            raise overloaded(
                "too many requests waiting; retry later", lane.expected_wait(now, self._max_batch)
            )
        due = None
        if time_remaining is not None:
            margin = min(REPLY_SHARE * time_remaining, MAX_REPLY_MARGIN)
            due = now + time_remaining - margin
            wait = lane.expected_wait(now, self._max_batch)
            if now + wait >= due:
                raise overloaded(TOO_LATE, wait)
        waiting: _Waiting[T, R] = _Waiting(item, due, loop.create_future())
        if due is not None:
            waiting.timer = loop.call_at(due, self._too_late, lane, waiting)
        lane.queue.append(waiting)
        lane.waiting += 1
        try:
            return await waiting.future
        finally:
            lane.leave(waiting)  # the caller went away (a no-op once it was answered)

    def _too_late(self, lane: _Lane[T, R], waiting: _Waiting[T, R]) -> None:
        """A queued request is due: refuse it while its caller still listens."""
        if lane.leave(waiting) and not waiting.future.done():
            wait = lane.expected_wait(asyncio.get_running_loop().time(), self._max_batch)
            waiting.future.set_exception(overloaded(TOO_LATE, wait))

    async def _drain(self, key: K, lane: _Lane[T, R]) -> None:
        loop = asyncio.get_running_loop()
        queue = lane.queue
        try:
            while queue:
                now = loop.time()
                finish = now + lane.pace.batch_seconds
                batch: list[_Waiting[T, R]] = []
                while queue and len(batch) < self._max_batch:
                    waiting = queue.popleft()
                    if not lane.leave(waiting) or waiting.future.done():  # answered already
                        continue
                    if waiting.due is not None and waiting.due < finish:
                        wait = lane.expected_wait(now, self._max_batch)
                        waiting.future.set_exception(overloaded(TOO_LATE, wait))
                        continue
                    batch.append(waiting)
                if not batch:
                    continue
                lane.in_flight = len(batch)
                if self.name:
                    metrics.batch_size.record(len(batch), self._attributes)
                lane.batch_started = loop.time()
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
                lane.pace.record(loop.time() - lane.batch_started)
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
                lane.leave(waiting)
                if not waiting.future.done():
                    waiting.future.cancel()

    async def close(self) -> None:
        """Waits for the batches in flight."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)
