"""The credits service's transactions: its `Tx` (the repositories bound to one
connection, and the request log) and the unit of work that hands them out. The only
place the service opens connections and transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from libs.common.clock import Clock
from libs.common.idempotency import IdempotencyStore, PostgresRequestLog, RequestLog
from libs.common.reasons import Reason
from libs.common.unit_of_work import PostgresUnitOfWork, UnitOfWork
from services.credits.repository.ledger import LedgerRepository
from services.credits.repository.offices import OfficeRepository
from services.credits.repository.usage import UsageRepository

SCHEMA = "credits"


class RequestIds:
    """The request_ids kept for idempotency, as a whole: old ones are dropped."""

    def __init__(self, conn: asyncpg.Connection, store: IdempotencyStore) -> None:
        self._conn = conn
        self._store = store

    async def purge(self, retention_hours: int) -> int:
        """Drops keys older than the retention; returns how many."""
        return await self._store.purge(self._conn, retention_hours)


@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction of the credits database."""

    offices: OfficeRepository
    ledger: LedgerRepository
    usage: UsageRepository
    requests: RequestLog
    request_ids: RequestIds


class CreditsUnitOfWork(UnitOfWork[Tx], Protocol):
    """Transactions, plain reads, and reads of one instant."""

    def snapshot(self) -> AbstractAsyncContextManager[Tx]:
        """Reads that all see the database as of one instant (read only)."""
        ...


class PostgresCreditsUnitOfWork(PostgresUnitOfWork[Tx]):
    """The credits unit of work on an asyncpg pool."""

    def __init__(self, db: asyncpg.Pool, clock: Clock) -> None:
        store = IdempotencyStore(SCHEMA)

        def bind(conn: asyncpg.Connection) -> Tx:
            return Tx(
                offices=OfficeRepository(conn),
                ledger=LedgerRepository(conn, clock),
                usage=UsageRepository(conn),
                requests=PostgresRequestLog(conn, store),
                request_ids=RequestIds(conn, store),
            )

        super().__init__(db, bind)
        self._pool = db
        self._bind_tx = bind

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """See `UnitOfWork.transaction`. Two transactions that wait for each other (a
        request_id claimed by one while it waits for the (company, currency) lock that
        the other holds, waiting to record the same request_id) are broken up by
        PostgreSQL: the one rolled back is ABORTED, to retry with the same request_id."""
        try:
            async with super().transaction() as tx:
                yield tx
        except asyncpg.exceptions.DeadlockDetectedError:
            raise Reason.CONCURRENT_CHANGE.error(
                "two requests waited for each other and this one was rolled back; retry"
            ) from None

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Tx]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield self._bind_tx(conn)
