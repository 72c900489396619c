"""The billing service's transactions: its `Tx` (the repositories bound to one
connection, and the request log) and the unit of work that hands them out. The only
place the service opens connections and transactions (besides the lease heartbeat,
`leases.py`, which renews every lease this process holds in one statement)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from libs.common.clock import Clock
from libs.common.idempotency import IdempotencyStore, PostgresRequestLog, RequestIds, RequestLog
from libs.common.outbox import Outbox, PostgresOutbox, flush_events
from libs.common.unit_of_work import PostgresUnitOfWork, UnitOfWork
from services.billing.repository.instants import Instants
from services.billing.repository.invoices import Invoices
from services.billing.repository.plans import Plans
from services.billing.repository.purchases import Purchases
from services.billing.repository.quotes import Quotes

SCHEMA = "billing"


@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction (or one connection's reads) of the billing database."""

    instants: Instants
    plans: Plans
    quotes: Quotes
    purchases: Purchases
    invoices: Invoices
    requests: RequestLog
    request_ids: RequestIds
    events: Outbox


BillingUnitOfWork = UnitOfWork[Tx]


class PostgresBillingUnitOfWork(PostgresUnitOfWork[Tx]):
    """The billing unit of work on an asyncpg pool."""

    def __init__(self, db: asyncpg.Pool, clock: Clock, replica: asyncpg.Pool | None = None) -> None:
        store = IdempotencyStore(SCHEMA)

        def bind(conn: asyncpg.Connection) -> Tx:
            return Tx(
                instants=Instants(conn, clock),
                plans=Plans(conn),
                quotes=Quotes(conn),
                purchases=Purchases(conn),
                invoices=Invoices(conn),
                requests=PostgresRequestLog(conn, store),
                request_ids=RequestIds(conn, store),
                events=PostgresOutbox(conn, SCHEMA),
            )

        super().__init__(db, bind, flush_events, replica)
