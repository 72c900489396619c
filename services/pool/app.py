"""Wiring of the pool service: database, use cases, gRPC server, hold sweeper."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from libs.common import migrations
from libs.common.clock import Clock, DatabaseClock
from libs.common.database import create_pool
from libs.common.database_outage import DatabaseWatch
from libs.common.server import Registration, RunningServer, start_server
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.config import PoolSettings
from services.pool.service import SCHEMA, PoolService
from services.pool.servicer import SERVICE_NAME, PoolServicer

ERROR_DOMAIN = "pool.licensing"


def migrate(database_url: str) -> None:
    """Applies the pool schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


@dataclass
class PoolApp:
    server: RunningServer
    service: PoolService
    db: asyncpg.Pool
    sweeper: asyncio.Task[None]

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        await self.server.stop(grace)
        self.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper
        await self.service.close()
        await self.db.close()


async def start(settings: PoolSettings, clock: Clock | None = None) -> PoolApp:
    """Starts the service on `settings.host:settings.port` (0: a free port)."""
    db = await create_pool(
        settings.database_url, settings.db_pool_size, settings.database_connect_timeout_seconds
    )
    service = PoolService(db, clock or DatabaseClock(), settings)
    registration = Registration(
        SERVICE_NAME, PoolServicer(service), pool_pb2_grpc.add_PoolServiceServicer_to_server
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    sweeper = asyncio.create_task(service.run_sweeper())
    return PoolApp(server, service, db, sweeper)
