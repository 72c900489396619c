"""Telling a database outage from a bug, and saying so to callers and to health checks.

While the database cannot be reached, every call answers UNAVAILABLE with the reason
`DATABASE_UNAVAILABLE` (retry later, mutations with the same request_id: a write that
may have committed replays its first response), and gRPC health says NOT_SERVING so
load balancers stop routing to a service that cannot work. The outage is logged once
when it starts and once when it ends, never per call.

One `DatabaseWatch` per service. Calls that fail on the database mark the outage at
once; a probe on a connection of its own (`SELECT 1`, short timeout, every second or so)
notices outages nobody calls into and, above all, when the database answers again. The
probe does not borrow from the service's pool: under load a pool connection may be long
in coming, and that is not an outage. The service's asyncpg pool needs no help to
recover: a pooled connection that was lost is dropped and a new one made on next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from libs.common.database import plain_url
from libs.common.errors import Unavailable
from libs.common.settings import ServiceSettings

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"

_UNREACHABLE: tuple[type[BaseException], ...] = (
    # Refused, reset, broken pipe, no such socket, connect timed out (TimeoutError is an
    # OSError; no handler here waits on anything but the database and gRPC peers, which
    # fail with their own error type).
    OSError,
    # SQLSTATE class 08, and asyncpg's "connection was closed in the middle of operation".
    asyncpg.PostgresConnectionError,
    # 57P01 administrator shutdown or postmaster exit, 57P02 another backend crashed,
    # 57P03 starting up / shutting down / in recovery.
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


def is_database_unreachable(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, means the database could not be
    reached (as opposed to a query or a bug that would fail again the same way)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _UNREACHABLE) or _used_a_lost_connection(current):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


def _used_a_lost_connection(error: BaseException) -> bool:
    # asyncpg has no class of its own for these two; their messages are all there is.
    # "connection is closed": e.g. a rollback after the connection was lost mid-transaction.
    # "cannot switch to state": a pooled connection whose server sent its dying FATAL
    # error but whose socket has not yet been seen closed (asyncpg drops it once it
    # has); nothing was sent on it. A connection used by two callers at once fails
    # earlier, with an InterfaceError "another operation is in progress".
    message = str(error)
    if isinstance(error, asyncpg.InterfaceError):
        return "connection is closed" in message
    if isinstance(error, asyncpg.InternalClientError):
        return message.startswith("cannot switch to state")
    return False


def database_unavailable() -> Unavailable:
    """The error callers get while the database cannot be reached."""
    return Unavailable(
        DATABASE_UNAVAILABLE,
        "the database cannot be reached right now; retry later (with the same request_id)",
    )


Publish = Callable[[bool], Awaitable[None]]


class DatabaseWatch:
    """Whether this service's database can be reached, as last seen by a call or the probe."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._url = plain_url(settings.database_url)
        self._interval = settings.database_probe_interval_seconds
        self._timeout = settings.database_probe_timeout_seconds
        # As the service's own pool: behind PgBouncer a cached statement may meet another
        # client's on the next server connection.
        self._statement_cache_size = settings.database_statement_cache_size
        self._down_since: float | None = None
        self._changed = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    def unavailable(self, error: BaseException) -> Unavailable | None:
        """For an exception that escaped a call: DATABASE_UNAVAILABLE when it means the
        database could not be reached (the outage is marked at once), else None."""
        if not is_database_unreachable(error):
            return None
        self._mark_down(error)
        return database_unavailable()

    def start(self, publish: Publish) -> None:
        """Starts probing; `publish(serving)` is awaited whenever reachability changes."""
        self._task = asyncio.create_task(self._watch(publish))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    async def _watch(self, publish: Publish) -> None:
        published = True  # the server starts SERVING: the pool has just connected
        while True:
            if self.reachable != published:
                published = self.reachable
                await publish(published)
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    woken = await self._changed.wait()
            self._changed.clear()
            if woken:
                continue  # a call found the database gone: say so before probing again
            problem = await self._probe()
            if problem is None:
                self._mark_up()
            else:
                self._mark_down(problem)

    async def _probe(self) -> Exception | None:
        try:
            if self._connection is None or self._connection.is_closed():
                self._connection = None
                self._connection = await asyncpg.connect(
                    self._url,
                    timeout=self._timeout,
                    statement_cache_size=self._statement_cache_size,
                )
            await self._connection.fetchval("SELECT 1", timeout=self._timeout)
            return None
        except Exception as error:  # whatever it is, the service cannot work
            if self._connection is not None:
                self._connection.terminate()
                self._connection = None
            return error

    def _mark_down(self, cause: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self._changed.set()
        log.warning(
            "database unreachable: answering UNAVAILABLE and NOT_SERVING until it answers",
            extra={"cause": f"{type(cause).__name__}: {cause}"},
        )

    def _mark_up(self) -> None:
        if self._down_since is None:
            return
        lasted = time.monotonic() - self._down_since
        self._down_since = None
        self._changed.set()
        log.info("database reachable again", extra={"outage_seconds": round(lasted, 1)})
