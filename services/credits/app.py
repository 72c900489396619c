"""Wiring of the credits service: database, unit of work, use cases, gRPC server,
housekeeping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg

from libs.common import migrations
from libs.common.clock import Clock, DatabaseClock
from libs.common.database import service_pools
from libs.common.database_outage import DatabaseWatch
from libs.common.event_stream import EventStream
from libs.common.server import Registration, RunningServer, start_server, stop_service
from licensing.credits.v1 import credits_pb2, credits_pb2_grpc
from services.credits.api import convert
from services.credits.api.servicer import CreditsServicer
from services.credits.config import CreditsSettings
from services.credits.domain import events
from services.credits.unit_of_work import SCHEMA, PostgresCreditsUnitOfWork
from services.credits.use_cases.accounts import PutAccount
from services.credits.use_cases.housekeeping import purge_request_ids
from services.credits.use_cases.recording import UsageRecorder
from services.credits.use_cases.routing import OfficeCurrencies

ERROR_DOMAIN = "credits.licensing"


def migrate(database_url: str) -> None:
    """Applies the credits schema's migrations (blocking)."""
    migrations.upgrade(database_url, Path(__file__).parent / "migrations", SCHEMA)


@dataclass
class CreditsApp:
    server: RunningServer
    recorder: UsageRecorder
    db: asyncpg.Pool
    purger: asyncio.Task[None]
    events: EventStream
    event_purger: asyncio.Task[None]
    replica: asyncpg.Pool | None = None  # the read replica's (<SVC>_READ_DATABASE_URL)

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 0) -> None:
        await stop_service(
            self.server,
            grace,
            (self.purger, self.event_purger),
            [self.recorder.close],
            [self.db, self.replica],
        )


async def start(settings: CreditsSettings, clock: Clock | None = None) -> CreditsApp:
    """Starts the service on `settings.host:settings.port` (0: a free port)."""
    db, replica = await service_pools(settings)
    uow = PostgresCreditsUnitOfWork(db, clock or DatabaseClock(), replica)
    currencies = OfficeCurrencies()
    recorder = UsageRecorder(
        uow,
        convert.encode_usage,
        currencies,
        future_tolerance=timedelta(seconds=settings.future_tolerance_seconds),
        max_batch=settings.max_batch,
        max_waiting=settings.max_waiting,
        max_keys=settings.max_batch_pools,
        writers=settings.usage_writers,
    )
    stream = EventStream(uow, settings, events.TYPES, credits_pb2.WatchEventsResponse)
    servicer = CreditsServicer(
        uow, PutAccount(currencies), recorder, settings.max_batch_records, stream
    )
    registration = Registration(
        convert.SERVICE_NAME, servicer, credits_pb2_grpc.add_CreditsServiceServicer_to_server
    )
    server = await start_server([registration], settings, ERROR_DOMAIN, DatabaseWatch(settings))
    purger = asyncio.create_task(
        purge_request_ids(
            uow, settings.idempotency_retention_hours, settings.purge_interval_seconds
        )
    )
    return CreditsApp(
        server, recorder, db, purger, stream, asyncio.create_task(stream.keep_purging()), replica
    )
