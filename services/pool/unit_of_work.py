"""The pool's transactions: its repositories bound to one connection (`Tx`), and the unit
of work that hands them out, the only place the pool opens connections and transactions."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from libs.common.clock import Clock
from libs.common.idempotency import IdempotencyStore, PostgresRequestLog, RequestLog
from libs.common.unit_of_work import PostgresUnitOfWork, SnapshotUnitOfWork
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


# The pool's transactions; snapshots read as of one instant besides.
PoolUnitOfWork = SnapshotUnitOfWork[Tx]
PostgresPoolUnitOfWork = PostgresUnitOfWork[Tx]


def unit_of_work(
    db: asyncpg.Pool, clock: Clock, replica: asyncpg.Pool | None = None
) -> PostgresPoolUnitOfWork:
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

    return PostgresPoolUnitOfWork(db, bind, replica)
