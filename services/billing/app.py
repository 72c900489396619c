"""Wiring of the billing service: database, pool client, use cases, gRPC server, recovery
and the heartbeat of purchase leases."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from libs.common import migrations, tls
from libs.common.clock import Clock, DatabaseClock
from libs.common.database import create_pool
from libs.common.database_outage import DatabaseWatch
from libs.common.server import Registration, RunningServer, start_server
from licensing.billing.v1 import billing_pb2_grpc
from services.billing.config import BillingSettings
from services.billing.pool_client import PoolClient
from services.billing.service import SCHEMA, BillingService
from services.billing.servicer import SERVICE_NAME, BillingServicer

ERROR_DOMAIN = "billing.licensing"


def migrate(database_url: str) -> None:
    """Applies the billing schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


async def _idle() -> None:
    await asyncio.Event().wait()


@dataclass
class BillingApp:
    server: RunningServer
    service: BillingService
    db: asyncpg.Pool
    recovery: asyncio.Task[None]
    heartbeat: asyncio.Task[None]

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        await self.server.stop(grace)
        for task in (self.recovery, self.heartbeat):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.service.close()
        await self.db.close()


async def start(
    settings: BillingSettings, clock: Clock | None = None, recovery: bool = True
) -> BillingApp:
    """Starts the service on `settings.host:settings.port` (0: a free port)."""
    db = await create_pool(
        settings.database_url, settings.db_pool_size, settings.database_connect_timeout_seconds
    )
    pool = PoolClient(
        settings.pool_address,
        settings.pool_deadline_seconds,
        settings.pool_attempts,
        settings.pool_retry_max_wait_seconds,
        credentials=tls.peer_credentials(settings),
    )
    service = BillingService(db, clock or DatabaseClock(), settings, pool)
    registration = Registration(
        SERVICE_NAME,
        BillingServicer(service),
        billing_pb2_grpc.add_BillingServiceServicer_to_server,
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    task = asyncio.create_task(service.run_recovery() if recovery else _idle())
    # Leases are renewed with or without the recovery task: drives need them either way.
    heartbeat = asyncio.create_task(service.keep_leases())
    return BillingApp(server, service, db, task, heartbeat)
