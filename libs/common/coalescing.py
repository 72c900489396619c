"""A writer that coalesces concurrent requests into batches, serialized per key.

Requests for the same key (e.g. one company's pool in one currency) wait in a bounded
queue; a worker hands everything waiting to the batch handler at once, so a batch shares
one database transaction and one commit. A key is in at most one batch at a time, and
its requests are handled in arrival order.

Two ways to run the keys:

- per key (`Coalescer(handler)`): each key with work has a worker of its own; keys never
  wait for each other;
- across keys (`Coalescer.across_keys(handler, max_keys, writers)`): at most `writers`
  batches run at once, each taking the waiting requests of up to `max_keys` keys, so many
  keys with a request or two each (many tenants) share one transaction and one commit
  instead of paying one each. Keys take turns in the order they got work.

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
# The batches of several keys at once: one result list per key, in the keys' order.
GroupHandler = Callable[
    [Sequence[tuple[K, Sequence[T]]]], Awaitable[Sequence[Sequence[R | BaseException]]]
]

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
    ready: bool = False  # waits for a worker to take its next batch

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
        async def one_key(
            batches: Sequence[tuple[K, Sequence[T]]],
        ) -> Sequence[Sequence[R | BaseException]]:
            ((key, items),) = batches
            return [await handler(key, items)]

        self._setup(one_key, max_batch, max_waiting, name, max_keys=1, writers=None)

    @classmethod
    def across_keys(
        cls,
        handler: GroupHandler[K, T, R],
        *,
        max_keys: int,
        writers: int,
        max_batch: int = 256,
        max_waiting: int = 4096,
        name: str = "",
    ) -> Coalescer[K, T, R]:
        """A writer whose batches take up to `max_keys` keys each, `writers` at a time."""
        writer = cls.__new__(cls)
        writer._setup(handler, max_batch, max_waiting, name, max_keys=max_keys, writers=writers)
        return writer

    def _setup(
        self,
        handler: GroupHandler[K, T, R],
        max_batch: int,
        max_waiting: int,
        name: str,
        *,
        max_keys: int,
        writers: int | None,
    ) -> None:
        self.name = name  # in metrics (`licensing.writer`); none without one
        self._attributes = {"licensing.writer": name}
        self._handler = handler
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._max_keys = max_keys
        self._writers = writers  # None: a worker for every key with work
        self._lanes: dict[K, _Lane[T, R]] = {}
        self._paces: dict[K, _Pace] = {}  # outlive the lanes: a new burst starts informed
        self._ready: deque[K] = deque()  # keys waiting for a worker, in the order they got work
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
                if not lane.queue and not lane.in_flight:
                    del self._lanes[key]
                raise overloaded(TOO_LATE, wait)
        waiting: _Waiting[T, R] = _Waiting(item, due, loop.create_future())
        if due is not None:
            waiting.timer = loop.call_at(due, self._too_late, lane, waiting)
        lane.queue.append(waiting)
        lane.waiting += 1
        if not lane.in_flight and not lane.ready:
            self._make_ready(key, lane)
        try:
            return await waiting.future
        finally:
            lane.leave(waiting)  # the caller went away (a no-op once it was answered)

    def _make_ready(self, key: K, lane: _Lane[T, R], spawn: bool = True) -> None:
        lane.ready = True
        self._ready.append(key)
        if spawn and (self._writers is None or len(self._workers) < self._writers):
            worker = asyncio.get_running_loop().create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    def _too_late(self, lane: _Lane[T, R], waiting: _Waiting[T, R]) -> None:
        """A queued request is due: refuse it while its caller still listens."""
        if lane.leave(waiting) and not waiting.future.done():
            wait = lane.expected_wait(asyncio.get_running_loop().time(), self._max_batch)
            waiting.future.set_exception(overloaded(TOO_LATE, wait))

    def _take(self, lane: _Lane[T, R], now: float) -> list[_Waiting[T, R]]:
        """The lane's next batch: what waits, up to `max_batch`, except what the batch
        would answer too late (refused now)."""
        queue = lane.queue
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
        return batch

    def _after(self, key: K, lane: _Lane[T, R]) -> None:
        """A lane's batch ended (or it had none): next turn, or no work left. Called by
        a worker, which goes on taking turns: no new worker is needed for it."""
        if lane.queue:
            self._make_ready(key, lane, spawn=False)
        else:
            del self._lanes[key]

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        picked: list[tuple[K, _Lane[T, R], list[_Waiting[T, R]]]] = []
        try:
            while self._ready:
                now = loop.time()
                while self._ready and len(picked) < self._max_keys:
                    key = self._ready.popleft()
                    lane = self._lanes[key]
                    lane.ready = False
                    batch = self._take(lane, now)
                    if batch:
                        lane.in_flight = len(batch)
                        picked.append((key, lane, batch))
                    else:
                        self._after(key, lane)
                if not picked:
                    continue
                if self.name:
                    requests = sum(len(batch) for _, _, batch in picked)
                    metrics.batch_size.record(requests, self._attributes)
                    metrics.batch_keys.record(len(picked), self._attributes)
                started = loop.time()
                for _, lane, _ in picked:
                    lane.batch_started = started
                try:
                    results = await self._handler(
                        [(key, [w.item for w in batch]) for key, _, batch in picked]
                    )
                except asyncio.CancelledError:
                    raise
                except BaseException as error:  # the whole batch failed
                    results = [[error] * len(batch) for _, _, batch in picked]
                elapsed = loop.time() - started
                done, picked = picked, []
                for (key, lane, batch), answers in zip(done, results, strict=True):
                    lane.in_flight = 0
                    lane.pace.record(elapsed)
                    for waiting, result in zip(batch, answers, strict=True):
                        if waiting.future.done():
                            continue
                        if isinstance(result, BaseException):
                            waiting.future.set_exception(result)
                        else:
                            waiting.future.set_result(result)
                    self._after(key, lane)
        except asyncio.CancelledError:
            # Shutting down: nobody is left to answer the batch or what waits for a worker.
            for _, lane, batch in picked:
                for waiting in batch:
                    waiting.future.cancel()
                lane.in_flight = 0
            self._abandon_ready()
            raise

    def _abandon_ready(self) -> None:
        while self._ready:
            key = self._ready.popleft()
            lane = self._lanes.pop(key)
            for waiting in lane.queue:
                lane.leave(waiting)
                if not waiting.future.done():
                    waiting.future.cancel()

    async def close(self) -> None:
        """Waits for the batches in flight."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)
