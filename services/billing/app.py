"""Wiring of the billing service: database, unit of work, pool and credits gateways, the
purchase saga, gRPC server, recovery and the heartbeat of purchase leases."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from libs.common import migrations, tls
from libs.common.clock import Clock, DatabaseClock
from libs.common.database import service_pools
from libs.common.database_outage import DatabaseWatch, is_database_unreachable
from libs.common.event_stream import EventStream
from libs.common.peer import PeerSettings
from libs.common.server import Registration, RunningServer, start_server, stop_service
from licensing.billing.v1 import billing_pb2, billing_pb2_grpc
from services.billing.adapters.credits import CreditsGateway
from services.billing.adapters.pool import PoolGateway
from services.billing.api.convert import SERVICE_NAME
from services.billing.api.servicer import BillingServicer
from services.billing.config import BillingSettings
from services.billing.domain import events
from services.billing.domain.model import Purchase
from services.billing.domain.purchase import Action
from services.billing.leases import LeaseKeeper
from services.billing.repository import BillingRepository
from services.billing.unit_of_work import SCHEMA, BillingUnitOfWork, PostgresBillingUnitOfWork
from services.billing.use_cases.purchases import PurchaseSaga, StepObserver

ERROR_DOMAIN = "billing.licensing"
PURGE_EVERY_SECONDS = 3600.0

log = logging.getLogger(__name__)


def migrate(database_url: str) -> None:
    """Applies the billing schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


async def _idle() -> None:
    await asyncio.Event().wait()


def session_name(pid: int | None = None) -> str:
    """The database sessions' application_name of the billing process `pid` (this one)."""
    return f"billing/{os.getpid() if pid is None else pid}"


def crash_after(step: str) -> StepObserver | None:
    """For tests: exits the process right after the pool call `step` of a purchase
    ("restore", "reserve", "commit", "add") the way a crash would (no cleanup, nothing
    flushed); None when no step is set."""
    if not step:
        return None

    def observe(purchase: Purchase, done: Action) -> None:
        if done.value == step:
            log.error("crashing after %s, as configured (BILLING_CRASH_AFTER_STEP)", step)
            os._exit(70)

    return observe


async def run_recovery(
    saga: PurchaseSaga, uow: BillingUnitOfWork, settings: BillingSettings
) -> None:
    """Recovers interrupted purchases (at once, then every recovery interval) and purges
    old idempotency keys until cancelled."""
    since_purge = PURGE_EVERY_SECONDS
    while True:
        try:
            await saga.recover_interrupted()
            if since_purge >= PURGE_EVERY_SECONDS:
                since_purge = 0.0
                async with uow.reading() as tx:
                    await tx.request_ids.purge(settings.idempotency_retention_hours)
        except Exception as error:
            if not is_database_unreachable(error):  # the database watch logs outages
                log.warning("purchase recovery failed; will retry", exc_info=True)
        await asyncio.sleep(settings.recovery_interval_seconds)
        since_purge += settings.recovery_interval_seconds


@dataclass
class BillingApp:
    server: RunningServer
    saga: PurchaseSaga
    pool: PoolGateway
    db: asyncpg.Pool
    recovery: asyncio.Task[None]
    heartbeat: asyncio.Task[None]
    events: EventStream
    event_purger: asyncio.Task[None]
    credits: CreditsGateway | None = None
    replica: asyncpg.Pool | None = None  # the read replica's (<SVC>_READ_DATABASE_URL)

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        closing = [self.pool.close]
        if self.credits is not None:
            closing.append(self.credits.close)
        await stop_service(
            self.server,
            grace,
            (self.recovery, self.heartbeat, self.event_purger),
            closing,
            [self.db, self.replica],
        )


async def start(
    settings: BillingSettings, clock: Clock | None = None, recovery: bool = True
) -> BillingApp:
    """Starts the service on `settings.host:settings.port` (0: a free port)."""
    # Per process: a replica's sessions are told apart (and, after a crash, seen end).
    db, replica = await service_pools(settings, application_name=session_name())
    uow = PostgresBillingUnitOfWork(db, clock or DatabaseClock(), replica)
    pool = PoolGateway(
        settings.pool_address,
        PeerSettings(
            deadline_seconds=settings.pool_deadline_seconds, max_attempts=settings.pool_attempts
        ),
        credentials=tls.peer_credentials(settings),
    )
    credits = _credits_gateway(settings)
    leases = LeaseKeeper(db, BillingRepository(), settings.purchase_lease_seconds)
    saga = PurchaseSaga(
        uow,
        pool,
        leases,
        hold_seconds=settings.purchase_hold_seconds,
        wait_seconds=settings.purchase_wait_seconds,
        observer=crash_after(settings.crash_after_step),
    )
    stream = EventStream(uow, settings, events.TYPES, billing_pb2.WatchEventsResponse)
    registration = Registration(
        SERVICE_NAME,
        BillingServicer(uow, pool, saga, settings.quote_hold_seconds, stream, credits),
        billing_pb2_grpc.add_BillingServiceServicer_to_server,
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    task = asyncio.create_task(run_recovery(saga, uow, settings) if recovery else _idle())
    # Leases are renewed with or without the recovery task: drives need them either way.
    heartbeat = asyncio.create_task(leases.run())
    purger = asyncio.create_task(stream.keep_purging())
    return BillingApp(server, saga, pool, db, task, heartbeat, stream, purger, credits, replica)


def _credits_gateway(settings: BillingSettings) -> CreditsGateway | None:
    """The credits service at `settings.credits_address` (None when it is not set)."""
    if not settings.credits_address:
        log.warning(
            "no credits service configured (CREDITS_ADDRESS): credit accounts are not kept"
            " in step with plans and invoices carry no credit overage"
        )
        return None
    return CreditsGateway(
        settings.credits_address,
        PeerSettings(
            deadline_seconds=settings.credits_deadline_seconds,
            max_attempts=settings.pool_attempts,
        ),
        credentials=tls.peer_credentials(settings),
    )
