"""The pool's transactions: its repositories bound to one connection (`Tx`), and the unit
of work that hands them out, the only place the pool opens connections and transactions."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from libs.common.clock import Clock
from libs.common.idempotency import IdempotencyStore, PostgresRequestLog, RequestLog
from libs.common.key_locks import lock_statement
from libs.common.outbox import Outbox, PostgresOutbox, flush_events
from libs.common.unit_of_work import PostgresUnitOfWork, SnapshotUnitOfWork
from services.pool.domain.model import UnitCount
from services.pool.repository.allocation import Allocations
from services.pool.repository.history import History
from services.pool.repository.locks import Housekeeping, Locks, SnapshotLocks
from services.pool.repository.offices import Offices
from services.pool.repository.pools import Pools
from services.pool.repository.records import Holds, Receipts
from services.pool.repository.units import Units

SCHEMA = "pool"


@dataclass(frozen=True, slots=True)
class Tx:
    """The repositories of one transaction."""

    locks: Locks
    offices: Offices
    pools: Pools
    units: Units
    allocations: Allocations
    holds: Holds
    receipts: Receipts
    housekeeping: Housekeeping
    requests: RequestLog
    history: History
    events: Outbox


class PoolUnitOfWork(SnapshotUnitOfWork[Tx], Protocol):
    """The pool's transactions; snapshots read as of one instant besides, and live
    snapshots of units as of one instant of unit history."""

    def locked(self, keys: Sequence[tuple[uuid.UUID, str]]) -> AbstractAsyncContextManager[Tx]:
        """A transaction that holds the locks of `keys` (`Locks.take_all`) from its start;
        the statements in it see what their previous holders committed. (It returns no
        instant: `Allocations.open` reads it.)"""
        ...

    async def live_counts(
        self, company_id: uuid.UUID, currency: str | None, currencies: Collection[str]
    ) -> tuple[list[UnitCount], datetime]:
        """The company's live units counted (of `currency`, or all), and the instant of
        the count, with no writer of its pools in `currencies` in flight when both were
        taken: every change stamped at or before the instant is counted, none after."""
        ...


class PostgresPoolUnitOfWork(PostgresUnitOfWork[Tx]):
    def __init__(
        self,
        db: asyncpg.Pool,
        bind: Callable[[asyncpg.Connection], Tx],
        clock: Clock,
        before_commit: Callable[[Tx], Awaitable[None]] | None = None,
        replica: asyncpg.Pool | None = None,
    ) -> None:
        super().__init__(db, bind, before_commit, replica)
        self._clock = clock

    @asynccontextmanager
    async def locked(self, keys: Sequence[tuple[uuid.UUID, str]]) -> AsyncIterator[Tx]:
        # BEGIN and the locks in one simple query: one round trip less than
        # `conn.transaction()` and then the locks. What follows runs in later statements,
        # whose snapshots are taken once the locks are held. No session state is left
        # (PgBouncer's transaction pooling): the transaction ends here, or the pool's
        # reset of the connection rolls it back.
        async with self._db.acquire() as conn:
            try:
                await conn.execute(f"BEGIN; {lock_statement('pool', keys)}")
                tx = self._bind(conn)
                yield tx
                if self._before_commit is not None:
                    await self._before_commit(tx)
            except BaseException:
                with contextlib.suppress(Exception):  # else the pool's reset rolls back
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def live_counts(
        self, company_id: uuid.UUID, currency: str | None, currencies: Collection[str]
    ) -> tuple[list[UnitCount], datetime]:
        async with self._db.acquire() as conn, conn.transaction(readonly=True):
            instant = await SnapshotLocks(conn, self._clock).hold(company_id, list(currencies))
            counts = await Units(conn).counts(company_id, currency)
        return counts, instant


def unit_of_work(
    db: asyncpg.Pool, clock: Clock, replica: asyncpg.Pool | None = None
) -> PostgresPoolUnitOfWork:
    """The pool's unit of work on `db`; `clock` gives every transaction its instant."""
    requests = IdempotencyStore(SCHEMA)

    def bind(conn: asyncpg.Connection) -> Tx:
        events = PostgresOutbox(conn, SCHEMA)
        return Tx(
            locks=Locks(conn, clock),
            offices=Offices(conn),
            pools=Pools(conn),
            units=Units(conn),
            allocations=Allocations(conn, clock, events),
            holds=Holds(conn),
            receipts=Receipts(conn),
            housekeeping=Housekeeping(conn, requests),
            requests=PostgresRequestLog(conn, requests),
            history=History(conn),
            events=events,
        )

    return PostgresPoolUnitOfWork(db, bind, clock, flush_events, replica)
