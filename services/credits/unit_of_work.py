"""The credits service's transactions: its `Tx` (the repositories bound to one
connection, and the request log) and the unit of work that hands them out. The only
place the service opens connections and transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from libs.common.clock import Clock
from libs.common.idempotency import IdempotencyStore, PostgresRequestLog, RequestIds, RequestLog
from libs.common.outbox import Outbox, PostgresOutbox, flush_events
from libs.common.reasons import Reason
from libs.common.unit_of_work import PostgresUnitOfWork, SnapshotUnitOfWork
from services.credits.repository.ledger import LedgerRepository
from services.credits.repository.limits import LimitsRepository
from services.credits.repository.offices import OfficeRepository
from services.credits.repository.usage import UsageRepository

SCHEMA = "credits"


@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction of the credits database."""

    offices: OfficeRepository
    ledger: LedgerRepository
    usage: UsageRepository
    requests: RequestLog
    request_ids: RequestIds
    events: Outbox
    limits: LimitsRepository


CreditsUnitOfWork = SnapshotUnitOfWork[Tx]


class PostgresCreditsUnitOfWork(PostgresUnitOfWork[Tx]):
    """The credits unit of work on an asyncpg pool."""

    def __init__(self, db: asyncpg.Pool, clock: Clock, replica: asyncpg.Pool | None = None) -> None:
        store = IdempotencyStore(SCHEMA)

        def bind(conn: asyncpg.Connection) -> Tx:
            return Tx(
                offices=OfficeRepository(conn),
                ledger=LedgerRepository(conn, clock),
                usage=UsageRepository(conn),
                requests=PostgresRequestLog(conn, store),
                request_ids=RequestIds(conn, store),
                events=PostgresOutbox(conn, SCHEMA),
                limits=LimitsRepository(conn),
            )

        super().__init__(db, bind, flush_events, replica)

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
