"""Admission of calls: a cap on calls in flight, and draining before the server stops.

The cap is ours rather than grpc.aio's `maximum_concurrent_rpcs`, whose refusal is a bare
RESOURCE_EXHAUSTED: ours answers RESOURCE_EXHAUSTED OVERLOADED with an ErrorInfo and a
RetryInfo (retry after about one call's duration, when the calls ahead will be done).

Draining exists because grpc.aio takes calls from gRPC core one at a time, on the event
loop: calls that arrived but were not taken yet wait inside core, and stopping the server
discards them (their callers see CANCELLED although they were in flight). So the server
keeps taking calls until none has been running for a short quiet spell, then stops.

Health checks are neither capped nor waited for: probes must answer under any load.
"""

from __future__ import annotations

import asyncio
import time

from libs.common.shedding import overloaded

EXEMPT_PREFIX = "/grpc.health.v1.Health/"
# Weight of the newest call in the running mean of call durations.
DURATION_WEIGHT = 0.05


class Admission:
    """Refuses calls beyond `limit` in flight; `drain()` waits for the calls to stop.

    The guard of every handler (`error_status.CallGuard`) lets every call in through
    `enter` and out through `leave`, so a refusal becomes a status like any other
    domain error.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._unary = 0
        self._streams = 0
        self._last_active = time.monotonic()
        self._mean_duration = 0.0

    @property
    def in_flight(self) -> int:
        return self._unary + self._streams

    @staticmethod
    def exempt(method: str) -> bool:
        return method.startswith(EXEMPT_PREFIX)

    def enter(self, stream: bool = False) -> float:
        """Admits a call (or raises OVERLOADED); returns when it started."""
        self._admit()
        if stream:
            self._streams += 1
        else:
            self._unary += 1
        return self._last_active

    def leave(self, started: float, stream: bool = False) -> None:
        if stream:
            self._streams -= 1
            self._last_active = time.monotonic()
        else:
            self._unary -= 1
            self._done(started)

    def _admit(self) -> None:
        self._last_active = time.monotonic()
        if self.in_flight >= self._limit:
            raise overloaded(
                f"more than {self._limit} calls in flight; retry later", self._mean_duration
            )

    def _done(self, started: float) -> None:
        self._last_active = now = time.monotonic()
        duration = now - started
        if self._mean_duration:
            duration = (1 - DURATION_WEIGHT) * self._mean_duration + DURATION_WEIGHT * duration
        self._mean_duration = duration

    async def drain(self, quiet: float, longest: float) -> bool:
        """Waits until no unary call has run for `quiet` seconds: every call that had
        reached the server has been taken and answered. False if `longest` passed first.
        (Streams, such as watches, may outlive a drain: they are not waited for.)"""
        give_up = time.monotonic() + longest
        while True:
            now = time.monotonic()
            idle = now - self._last_active if self._unary == 0 else 0.0
            if idle >= quiet:
                return True
            if now >= give_up:
                return False
            await asyncio.sleep(min(quiet - idle, give_up - now))
