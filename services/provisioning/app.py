"""Wiring of the provisioning service: database, pool client, use cases, gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from libs.common import migrations, tls
from libs.common.clock import Clock, DatabaseClock
from libs.common.database import create_pool
from libs.common.database_outage import DatabaseWatch
from libs.common.server import Registration, RunningServer, start_server
from licensing.provisioning.v1 import provisioning_pb2_grpc
from services.provisioning.billing import BillingGateway, BillingNotConfigured
from services.provisioning.billing_client import BillingClient
from services.provisioning.config import ProvisioningSettings
from services.provisioning.imports import ImportService
from services.provisioning.pool_client import PoolClient
from services.provisioning.pool_operations import StepObserver
from services.provisioning.service import SCHEMA, ProvisioningService
from services.provisioning.servicer import ERROR_DOMAIN, SERVICE_NAME, ProvisioningServicer

log = logging.getLogger(__name__)


def migrate(database_url: str) -> None:
    """Applies the provisioning schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


@dataclass
class ProvisioningApp:
    server: RunningServer
    service: ProvisioningService
    imports: ImportService
    pool: PoolClient
    billing: BillingClient | None  # the billing service's channel, when we opened one
    db: asyncpg.Pool
    resumer: asyncio.Task[None]
    recovery: asyncio.Task[None]

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        await self.server.stop(grace)
        for task in (self.resumer, self.recovery):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.imports.close()
        await self.pool.close()
        if self.billing is not None:
            await self.billing.close()
        await self.db.close()


async def start(
    settings: ProvisioningSettings,
    clock: Clock | None = None,
    billing: BillingGateway | None = None,
    after_step: StepObserver | None = None,
) -> ProvisioningApp:
    """Starts the service on `settings.host:settings.port` (0: a free port).

    Purchases go to `billing` when given, else to the billing service at
    `settings.billing_address`; with neither, nothing can be bought. `after_step` is told
    every step of an operation that takes pool units (tests inject failures with it)."""
    db = await create_pool(
        settings.database_url, settings.db_pool_size, settings.database_connect_timeout_seconds
    )
    pool = PoolClient(
        settings.pool_address,
        settings.pool_timeout_seconds,
        settings.pool_attempts,
        credentials=tls.peer_credentials(settings),
    )
    client = billing_client(settings) if billing is None else None
    clock = clock or DatabaseClock()
    service = ProvisioningService(
        db,
        pool,
        billing or client or BillingNotConfigured(),
        clock,
        settings.operation_lease_seconds,
        after_step or crash_after(settings.crash_after_step),
    )
    imports = ImportService(db, pool, clock, settings)
    registration = Registration(
        SERVICE_NAME,
        ProvisioningServicer(service, imports),
        provisioning_pb2_grpc.add_ProvisioningServiceServicer_to_server,
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    resumer = asyncio.create_task(imports.resume_all())
    recovery = asyncio.create_task(
        service.operations.run_recovery(settings.recovery_interval_seconds)
    )
    return ProvisioningApp(server, service, imports, pool, client, db, resumer, recovery)


def crash_after(step: str) -> StepObserver | None:
    """For tests: exits the process right after `step` ("<operation>:<step>") the way a
    crash would (no cleanup, nothing flushed); None when no step is set."""
    if not step:
        return None

    async def observe(operation: str, done: str) -> None:
        if f"{operation}:{done}" == step:
            log.error("crashing after %s, as configured (PROVISIONING_CRASH_AFTER_STEP)", step)
            os._exit(70)

    return observe


def billing_client(settings: ProvisioningSettings) -> BillingClient | None:
    """The billing service at `settings.billing_address` (None when it is not set)."""
    if not settings.billing_address:
        return None
    return BillingClient(
        settings.billing_address,
        settings.billing_timeout_seconds,
        settings.billing_attempts,
        credentials=tls.peer_credentials(settings),
    )
