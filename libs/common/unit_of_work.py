"""The unit of work: the only place a service opens connections and transactions.

A service's unit of work hands out one object per transaction (its `Tx`: the service's
repositories bound to that transaction's connection). Use cases never see a connection:
a use case that is one transaction receives the open `Tx`; one that spans several
transactions (or calls a peer between them) receives the unit of work and opens them.
Tests give use cases an in-memory unit of work with the same `Tx` shape (`tests/fakes`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Generic, Protocol, TypeVar

import asyncpg

from libs.common.errors import required

T = TypeVar("T")
K = TypeVar("K")
Tx = TypeVar("Tx")
Tx_co = TypeVar("Tx_co", covariant=True)


class UnitOfWork(Protocol[Tx_co]):
    """Transactions of one service's database."""

    def transaction(self) -> AbstractAsyncContextManager[Tx_co]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        ...

    def reading(self) -> AbstractAsyncContextManager[Tx_co]:
        """Reads that need no transaction (each statement sees committed data)."""
        ...

    def stale_reading(self) -> AbstractAsyncContextManager[Tx_co]:
        """Reads that may be a little behind: on the read replica when the service has
        one (`<SVC>_READ_DATABASE_URL`), else as `reading`. Only for lists, searches and
        history that a caller shows, never for a read that decides or that must see the
        caller's own last write."""
        ...


class SnapshotUnitOfWork(UnitOfWork[Tx_co], Protocol):
    """Transactions, plain reads, and reads of one instant."""

    def snapshot(self) -> AbstractAsyncContextManager[Tx_co]:
        """Reads that all see the database as of one instant (nothing can be written)."""
        ...


async def read_one(
    uow: UnitOfWork[Tx],
    fetch: Callable[[Tx], Awaitable[T | None]],
    missing: Callable[[K], Exception],
    key: K,
) -> T:
    """What `fetch` reads (outside a transaction, `reading`), or the error `missing(key)`
    when it finds nothing: every `get_<thing>` use case."""
    async with uow.reading() as tx:
        found = await fetch(tx)
    return required(found, missing, key)


class PostgresUnitOfWork(Generic[Tx]):
    """Transactions on an asyncpg pool; `bind` builds the repositories of one connection,
    `before_commit` (if any) runs last in every transaction whose block succeeded (the
    outbox writes the transaction's events there, `libs.common.outbox`). `replica`, a pool
    on a read replica, serves `stale_reading` (None: the primary does)."""

    def __init__(
        self,
        db: asyncpg.Pool,
        bind: Callable[[asyncpg.Connection], Tx],
        before_commit: Callable[[Tx], Awaitable[None]] | None = None,
        replica: asyncpg.Pool | None = None,
    ) -> None:
        self._db = db
        self._bind = bind
        self._before_commit = before_commit
        self._replica = replica or db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._db.acquire() as conn, conn.transaction():
            tx = self._bind(conn)
            yield tx
            if self._before_commit is not None:
                await self._before_commit(tx)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        async with self._db.acquire() as conn:
            yield self._bind(conn)

    @asynccontextmanager
    async def stale_reading(self) -> AsyncIterator[Tx]:
        async with self._replica.acquire() as conn:
            yield self._bind(conn)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Tx]:
        async with (
            self._db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield self._bind(conn)
