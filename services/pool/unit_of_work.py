"""The pool's transactions: its repositories bound to one connection (`Tx`), and the unit
of work that hands them out, the only place the pool opens connections and transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from libs.common.clock import Clock
from libs.common.idempotency import IdempotencyStore, PostgresRequestLog, RequestLog
from libs.common.unit_of_work import PostgresUnitOfWork, UnitOfWork
from services.pool.repository.allocation import Allocations
from services.pool.repository.locks import Housekeeping, Locks
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


class PoolUnitOfWork(UnitOfWork[Tx], Protocol):
    """The pool's transactions; snapshots read as of one instant besides."""

    def snapshot(self) -> AbstractAsyncContextManager[Tx]:
        """Reads that all see the database as of one instant (nothing can be written)."""
        ...


class PostgresPoolUnitOfWork(PostgresUnitOfWork[Tx]):
    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Tx]:
        async with (
            self._db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield self._bind(conn)


def unit_of_work(db: asyncpg.Pool, clock: Clock) -> PostgresPoolUnitOfWork:
    """The pool's unit of work on `db`; `clock` gives every transaction its instant."""
    requests = IdempotencyStore(SCHEMA)

    def bind(conn: asyncpg.Connection) -> Tx:
        return Tx(
            locks=Locks(conn, clock),
            offices=Offices(conn),
            pools=Pools(conn),
            units=Units(conn),
            allocations=Allocations(conn),
            holds=Holds(conn),
            receipts=Receipts(conn),
            housekeeping=Housekeeping(conn, requests),
            requests=PostgresRequestLog(conn, requests),
        )

    return PostgresPoolUnitOfWork(db, bind)
