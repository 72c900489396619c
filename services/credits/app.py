"""Wiring of the credits service: database, use cases, gRPC server, housekeeping."""

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
from licensing.credits.v1 import credits_pb2_grpc
from services.credits.config import CreditsSettings
from services.credits.service import SCHEMA, CreditsService
from services.credits.servicer import SERVICE_NAME, CreditsServicer

ERROR_DOMAIN = "credits.licensing"


def migrate(database_url: str) -> None:
    """Applies the credits schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


@dataclass
class CreditsApp:
    server: RunningServer
    service: CreditsService
    db: asyncpg.Pool
    purger: asyncio.Task[None]

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        await self.server.stop(grace)
        self.purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.purger
        await self.service.close()
        await self.db.close()


async def start(settings: CreditsSettings, clock: Clock | None = None) -> CreditsApp:
    """Starts the service on `settings.host:settings.port` (0: a free port)."""
    db = await create_pool(
        settings.database_url, settings.db_pool_size, settings.database_connect_timeout_seconds
    )
    service = CreditsService(db, clock or DatabaseClock(), settings)
    registration = Registration(
        SERVICE_NAME,
        CreditsServicer(service, settings.max_batch_records),
        credits_pb2_grpc.add_CreditsServiceServicer_to_server,
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    purger = asyncio.create_task(service.run_purger())
    return CreditsApp(server, service, db, purger)
