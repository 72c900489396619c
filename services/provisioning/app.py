"""Wiring of the provisioning service: database, unit of work, peer gateways, use cases,
gRPC server, and the background work (resumed imports, recovered pool operations)."""

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
from libs.common.database_outage import DatabaseWatch
from libs.common.peer import PeerSettings
from libs.common.server import Registration, RunningServer, start_server, stop_service
from licensing.provisioning.v1 import provisioning_pb2_grpc
from services.provisioning.adapters.billing import (
    BillingClient,
    BillingGateway,
    BillingNotConfigured,
)
from services.provisioning.adapters.pool import GrpcPool
from services.provisioning.api import convert
from services.provisioning.api.servicer import ERROR_DOMAIN, SERVICE_NAME, ProvisioningServicer
from services.provisioning.config import ProvisioningSettings
from services.provisioning.unit_of_work import SCHEMA, ProvisioningUnitOfWork, unit_of_work
from services.provisioning.use_cases import licenses, users
from services.provisioning.use_cases.imports import ImportService
from services.provisioning.use_cases.operations import PoolOperations, StepObserver

log = logging.getLogger(__name__)


def migrate(database_url: str) -> None:
    """Applies the provisioning schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


@dataclass(frozen=True)
class UseCases:
    """What the handlers run on: the unit of work, the pool, the pool operations' driver
    (and recovery), the imports."""

    uow: ProvisioningUnitOfWork
    pool: GrpcPool
    operations: PoolOperations
    imports: ImportService


@dataclass
class ProvisioningApp:
    server: RunningServer
    service: UseCases
    billing: BillingClient | None  # the billing service's channel, when we opened one
    db: asyncpg.Pool
    resumer: asyncio.Task[None]
    recovery: asyncio.Task[None]
    replica: asyncpg.Pool | None = None  # the read replica's (<SVC>_READ_DATABASE_URL)

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        closing = [self.service.imports.close, self.service.pool.close]
        if self.billing is not None:
            closing.append(self.billing.close)
        await stop_service(
            self.server, grace, (self.resumer, self.recovery), closing, [self.db, self.replica]
        )


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
    db, replica = await service_pools(settings)
    uow = unit_of_work(db, clock or DatabaseClock(), replica)
    pool = GrpcPool(
        settings.pool_address,
        PeerSettings(
            deadline_seconds=settings.pool_timeout_seconds, max_attempts=settings.pool_attempts
        ),
        credentials=tls.peer_credentials(settings),
    )
    client = billing_client(settings) if billing is None else None
    operations = PoolOperations(
        uow,
        pool,
        billing or client or BillingNotConfigured(),
        {**users.UNDO, **licenses.UNDO},
        convert.ENCODERS,
        settings.operation_lease_seconds,
        after_step or crash_after(settings.crash_after_step),
    )
    imports = ImportService(uow, pool, settings)
    registration = Registration(
        SERVICE_NAME,
        ProvisioningServicer(uow, pool, operations, imports),
        provisioning_pb2_grpc.add_ProvisioningServiceServicer_to_server,
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    resumer = asyncio.create_task(imports.resume_all())
    recovery = asyncio.create_task(operations.run_recovery(settings.recovery_interval_seconds))
    service = UseCases(uow, pool, operations, imports)
    return ProvisioningApp(server, service, client, db, resumer, recovery, replica)


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
