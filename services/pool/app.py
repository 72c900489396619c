"""Wiring of the pool service: database, unit of work, use cases, gRPC server, sweeper."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg

from libs.common import migrations
from libs.common.clock import Clock, DatabaseClock
from libs.common.database import service_pools
from libs.common.database_outage import DatabaseWatch, is_database_unreachable
from libs.common.event_stream import EventStream
from libs.common.server import Registration, RunningServer, start_server, stop_service
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc
from services.pool.api import convert
from services.pool.api.servicer import SERVICE_NAME, PoolServicer
from services.pool.config import PoolSettings
from services.pool.domain import events
from services.pool.domain.model import Terms
from services.pool.unit_of_work import SCHEMA, unit_of_work
from services.pool.use_cases.allocation import Allocator
from services.pool.use_cases.history import purge_history
from services.pool.use_cases.holds import HoldExpiry
from services.pool.use_cases.offices import OfficeDirectory

ERROR_DOMAIN = "pool.licensing"
PURGE_EVERY_SECONDS = 3600.0

log = logging.getLogger(__name__)


def migrate(database_url: str) -> None:
    """Applies the pool schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


@dataclass
class PoolApp:
    server: RunningServer
    db: asyncpg.Pool
    allocator: Allocator
    expiry: HoldExpiry
    events: EventStream
    tasks: tuple[asyncio.Task[None], ...]
    replica: asyncpg.Pool | None = None  # the read replica's (<SVC>_READ_DATABASE_URL)

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        await stop_service(
            self.server, grace, self.tasks, [self.allocator.close], [self.db, self.replica]
        )


def terms(settings: PoolSettings) -> Terms:
    return Terms(
        grace=timedelta(seconds=settings.grace_seconds),
        hold_default=timedelta(seconds=settings.hold_default_seconds),
        hold_max=timedelta(seconds=settings.hold_max_seconds),
        history_retention=timedelta(days=settings.history_retention_days),
    )


async def periodically(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Runs `work` every `seconds` until cancelled; a failure (a lost connection, say)
    waits for the next turn instead of ending the task."""
    while True:
        try:
            await work()
        except Exception as error:
            if not is_database_unreachable(error):  # the database watch logs outages
                log.warning("%s failed; will retry", what, exc_info=True)
        await asyncio.sleep(seconds)


async def start(settings: PoolSettings, clock: Clock | None = None) -> PoolApp:
    """Starts the service on `settings.host:settings.port` (0: a free port)."""
    db, replica = await service_pools(settings)
    uow = unit_of_work(db, clock or DatabaseClock(), replica)
    directory = OfficeDirectory(uow)
    allocator = Allocator(
        uow,
        directory,
        convert.allocated,
        max_batch=settings.max_batch,
        max_waiting=settings.max_waiting,
        max_keys=settings.max_batch_pools,
        writers=settings.allocation_writers,
    )
    expiry = HoldExpiry(uow, settings.idempotency_retention_hours)
    pool_terms = terms(settings)
    stream = EventStream(uow, settings, events.TYPES, pool_pb2.WatchEventsResponse)
    servicer = PoolServicer(uow, pool_terms, directory, allocator, expiry, stream)
    registration = Registration(
        SERVICE_NAME, servicer, pool_pb2_grpc.add_PoolServiceServicer_to_server
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    tasks = (
        asyncio.create_task(
            periodically(settings.sweep_interval_seconds, expiry.expire_all_due, "hold sweep")
        ),
        asyncio.create_task(
            periodically(PURGE_EVERY_SECONDS, expiry.purge_request_ids, "request id purge")
        ),
        asyncio.create_task(
            periodically(
                PURGE_EVERY_SECONDS,
                lambda: purge_history(uow, pool_terms.history_retention),
                "unit history purge",
            )
        ),
        asyncio.create_task(stream.keep_purging()),
    )
    return PoolApp(server, db, allocator, expiry, stream, tasks, replica)
