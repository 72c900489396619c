"""While the database cannot be reached, every service answers UNAVAILABLE with the reason
DATABASE_UNAVAILABLE (never INTERNAL), health says NOT_SERVING, and both come back by
themselves when it answers again. The database is cut off with a relay in front of it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common.clock import FakeClock
from libs.common.database_outage import DATABASE_UNAVAILABLE
from libs.common.error_status import error_info
from libs.common.server import LIVENESS
from licensing.billing.v1 import billing_pb2, billing_pb2_grpc
from licensing.credits.v1 import credits_pb2, credits_pb2_grpc
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc
from licensing.provisioning.v1 import provisioning_pb2, provisioning_pb2_grpc
from services.billing import app as billing_app
from services.billing.api.convert import SERVICE_NAME as BILLING
from services.billing.config import BillingSettings
from services.credits import app as credits_app
from services.credits.api.convert import SERVICE_NAME as CREDITS
from services.credits.config import CreditsSettings
from services.pool import app as pool_app
from services.pool.api.servicer import SERVICE_NAME as POOL
from services.pool.config import PoolSettings
from services.provisioning import app as provisioning_app
from services.provisioning.api.servicer import SERVICE_NAME as PROVISIONING
from services.provisioning.config import ProvisioningSettings
from tests.support import tls
from tests.support.credits import CreditsCompany
from tests.support.database_relay import DatabaseRelay, database_relay
from tests.support.pool import Company, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST_PROBE = {"port": 0, "database_probe_interval_seconds": 0.2}
OUTAGE_LOG = "libs.common.database_outage"


@dataclass(frozen=True)
class Service:
    """How to start one service and make one call that reads its database."""

    name: str
    domain: str
    start: Callable[[str], Awaitable[Any]]
    read: Callable[[grpc.aio.Channel], Awaitable[object]]


async def _list_offices(channel: grpc.aio.Channel, deadline: float | None = None) -> object:
    stub = pool_pb2_grpc.PoolServiceStub(channel)
    request = pool_pb2.ListOfficesRequest(company_id=str(uuid.uuid4()))
    return await stub.ListOffices(request, timeout=deadline)


async def _list_plans(channel: grpc.aio.Channel) -> object:
    stub = billing_pb2_grpc.BillingServiceStub(channel)
    return await stub.ListPlans(billing_pb2.ListPlansRequest(company_id=str(uuid.uuid4())))


async def _list_accounts(channel: grpc.aio.Channel) -> object:
    stub = credits_pb2_grpc.CreditsServiceStub(channel)
    return await stub.ListAccounts(credits_pb2.ListAccountsRequest(company_id=str(uuid.uuid4())))


async def _watch_import(channel: grpc.aio.Channel) -> object:
    # A server-streaming call: its errors take the streaming path of the interceptor.
    stub = provisioning_pb2_grpc.ProvisioningServiceStub(channel)
    request = provisioning_pb2.WatchImportRequest(
        company_id=str(uuid.uuid4()), import_id=str(uuid.uuid4())
    )
    try:
        return [message async for message in stub.WatchImport(request)]
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:  # the database answered: no such import
            raise
        return error.code()


SERVICES = [
    Service(
        POOL,
        pool_app.ERROR_DOMAIN,
        lambda url: pool_app.start(PoolSettings(database_url=url, **FAST_PROBE)),
        _list_offices,
    ),
    Service(
        BILLING,
        billing_app.ERROR_DOMAIN,
        lambda url: billing_app.start(BillingSettings(database_url=url, **FAST_PROBE)),
        _list_plans,
    ),
    Service(
        CREDITS,
        credits_app.ERROR_DOMAIN,
        lambda url: credits_app.start(CreditsSettings(database_url=url, **FAST_PROBE)),
        _list_accounts,
    ),
    Service(
        PROVISIONING,
        provisioning_app.ERROR_DOMAIN,
        lambda url: provisioning_app.start(ProvisioningSettings(database_url=url, **FAST_PROBE)),
        _watch_import,
    ),
]


async def health(channel: grpc.aio.Channel, name: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
    return int(response.status)


async def eventually_health(channel: grpc.aio.Channel, status: int, name: str = "") -> None:
    """Waits (bounded) until health reports `status`: the probe runs on its own schedule."""
    for _ in range(150):
        if await health(channel, name) == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health of {name!r} never became {status}")


async def unavailable_reason(call: Awaitable[object]) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    info = error_info(failed.value)
    assert info is not None, failed.value
    return failed.value.code(), info.reason, info.domain


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@asynccontextmanager
async def served_through(
    database_url: str, start: Callable[[str], Awaitable[Any]]
) -> AsyncIterator[tuple[DatabaseRelay, grpc.aio.Channel]]:
    async with database_relay(database_url) as relay:
        app = await start(relay.url)
        channel = tls.channel(f"127.0.0.1:{app.port}")
        try:
            yield relay, channel
        finally:
            await channel.close()
            await relay.restore()  # lets the service close its pool cleanly
            await app.stop()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name.split(".")[1])
async def test_an_outage_is_unavailable_and_not_serving_until_the_database_answers(
    database_url: str, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served_through(database_url, service.start) as (relay, channel):
        await service.read(channel)
        assert await health(channel) == SERVING

        await relay.cut()
        for _ in range(3):
            assert await unavailable_reason(service.read(channel)) == (
                grpc.StatusCode.UNAVAILABLE,
                DATABASE_UNAVAILABLE,
                service.domain,
            )
        await eventually_health(channel, NOT_SERVING)
        assert await health(channel, service.name) == NOT_SERVING
        # The process itself is fine: liveness must not get it restarted.
        assert await health(channel, LIVENESS) == SERVING

        await relay.restore()
        await eventually_health(channel, SERVING)
        assert await health(channel, service.name) == SERVING
        await service.read(channel)  # the pool made new connections by itself

    outage_lines = [r.getMessage() for r in caplog.records if r.name == OUTAGE_LOG]
    assert len(outage_lines) == 2, outage_lines
    assert outage_lines[0].startswith("database unreachable")
    assert outage_lines[1] == "database reachable again"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@asynccontextmanager
async def writer_held(db: asyncpg.Pool, lock_key: str) -> AsyncIterator[None]:
    """Holds the writers' advisory lock of one key (directly, not through the relay), so
    the service's next batch waits in its transaction and the requests behind it queue."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lock_key)
        yield


async def batch_waiting(db: asyncpg.Pool) -> None:
    for _ in range(150):
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        if waiting:
            await asyncio.sleep(0.3)  # lets the other requests queue behind it
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no batch ever waited for the lock")


def warnings_besides_the_outage(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name != OUTAGE_LOG
    ]


async def test_a_batch_of_allocations_that_loses_the_database_answers_every_caller(
    database_url: str, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served_through(database_url, SERVICES[0].start) as (relay, channel):
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        company = Company(stub, str(uuid.uuid4()), {})
        await company.office("hq", "USD")
        await company.add("hq", "connect", 20)
        await company.acquire("hq", "connect")  # the office is known: Acquire goes to the writer

        request_ids = [rid() for _ in range(19)]
        async with writer_held(db, f"pool/{company.company_id}/USD"):
            calls = [
                asyncio.create_task(
                    unavailable_reason(company.acquire("hq", "connect", request_id=r))
                )
                for r in request_ids
            ]
            await batch_waiting(db)
            await relay.cut()  # the waiting batch loses its connection; the next cannot connect
            failures = await asyncio.gather(*calls)
        assert set(failures) == {
            (grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE, pool_app.ERROR_DOMAIN)
        }

        await relay.restore()
        await eventually_health(channel, SERVING)
        # Retrying with the same request ids is safe: each one is handed out exactly once.
        retried = [await company.acquire("hq", "connect", request_id=r) for r in request_ids]
        unit_ids = [u.unit_id for response in retried for u in response.units]
        assert len(set(unit_ids)) == 19
        replayed = await company.acquire("hq", "connect", request_id=request_ids[0])
        assert [u.unit_id for u in replayed.units] == [retried[0].units[0].unit_id]
    assigned = await db.fetchval(
        "SELECT count(*) FROM pool.units WHERE company_id = $1::uuid AND state = 'ASSIGNED'",
        company.company_id,
    )
    assert assigned == 20
    # No batch was retried request by request, and nothing was logged per call.
    assert warnings_besides_the_outage(caplog) == []


async def test_usage_recorded_while_the_database_is_gone_is_unavailable(
    database_url: str, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def start(url: str) -> Any:
        settings = CreditsSettings(database_url=url, **FAST_PROBE)
        return await credits_app.start(settings, FakeClock())

    async with served_through(database_url, start) as (relay, channel):
        stub = credits_pb2_grpc.CreditsServiceStub(channel)
        company = CreditsCompany(stub)
        await company.office("hq", allowance=1000)
        await company.use("hq", 1)  # the office is known: RecordUsage goes to the writer

        async with writer_held(db, f"credits/{company.company_id}/USD"):
            calls = [
                asyncio.create_task(unavailable_reason(company.use("hq", 1))) for _ in range(10)
            ]
            await batch_waiting(db)
            await relay.cut()
            singles = await asyncio.gather(*calls)
        assert set(singles) == {
            (grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE, credits_app.ERROR_DOMAIN)
        }
        # A batch call answers for each of its records.
        batch = await stub.BatchRecordUsage(
            credits_pb2.BatchRecordUsageRequest(
                company_id=company.company_id,
                requests=[company.usage_request("hq", 1) for _ in range(5)],
            )
        )
        assert {(r.error.code, r.error.reason) for r in batch.results} == {
            (grpc.StatusCode.UNAVAILABLE.value[0], DATABASE_UNAVAILABLE)
        }

        await relay.restore()
        await eventually_health(channel, SERVING)
        await company.use("hq", 1)
        assert len(await company.usage()) == 2
        check = await company.check()
        assert check.consistent, check.violations
    assert warnings_besides_the_outage(caplog) == []


async def test_a_database_host_that_never_answers_is_unavailable_not_a_hang(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    timeouts = {"database_connect_timeout_seconds": 0.5, "database_probe_timeout_seconds": 0.5}

    async def start(url: str) -> Any:
        return await pool_app.start(PoolSettings(database_url=url, **FAST_PROBE, **timeouts))

    async with served_through(database_url, start) as (relay, channel):
        await _list_offices(channel)

        await relay.black_hole()  # connections are taken, and never answered
        # The service gives up connecting well before the caller's deadline.
        assert await unavailable_reason(_list_offices(channel, deadline=20)) == (
            grpc.StatusCode.UNAVAILABLE,
            DATABASE_UNAVAILABLE,
            pool_app.ERROR_DOMAIN,
        )
        await eventually_health(channel, NOT_SERVING)

        await relay.restore()
        await eventually_health(channel, SERVING)
        await _list_offices(channel)
    assert warnings_besides_the_outage(caplog) == []
