"""PostgreSQL killed (`kill -9` of the postmaster) and restarted under load.

The pool and credits services run as their own processes on a PostgreSQL of this test's
own. While it is down every call answers UNAVAILABLE with the reason DATABASE_UNAVAILABLE
and health says NOT_SERVING; once it is back, both services work again without a
restart, no acknowledged allocation or usage is lost, no unit was handed out twice, and
the credit ledger balances. Calls that failed are retried with their request ids: each
one takes effect exactly once, whether or not its first attempt had committed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common.database import create_pool
from libs.common.database_outage import DATABASE_UNAVAILABLE
from licensing.credits.v1 import credits_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.credits import CreditsCompany
from tests.support.database import migrated_database
from tests.support.pool import Company, reason_of, rid
from tests.support.private_postgres import private_postgres
from tests.support.processes import ServiceProcess, spawned

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNITS = 3000
WORKERS = 6


@dataclass
class Load:
    """Callers of one service, each calling again as soon as it has an answer."""

    name: str
    call: Callable[[str], Awaitable[list[str]]]  # request id -> ids of what it created
    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(WORKERS)))

    async def _worker(self) -> None:
        while not self.stop.is_set():
            request_id = rid()
            try:
                self.acknowledged[request_id] = await self.call(request_id)
            except grpc.aio.AioRpcError as error:
                self.failed[request_id] = (error.code(), reason_of(error))
                await asyncio.sleep(0.05)  # a caller's back-off

    async def until_acknowledged(self, more: int) -> None:
        target = len(self.acknowledged) + more
        for _ in range(1200):
            if len(self.acknowledged) >= target:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name}: fewer than {more} calls went through")

    async def until_failed(self) -> None:
        for _ in range(1200):
            if self.failed:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name}: no call failed while the database was down")


@dataclass
class HealthWatch:
    """Every status a service's health reported, in order (repeats collapsed)."""

    channel: grpc.aio.Channel
    seen: list[int] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        while not stop.is_set():
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            if not self.seen or self.seen[-1] != response.status:
                self.seen.append(response.status)
            await asyncio.sleep(0.1)

    async def until(self, status: int) -> None:
        for _ in range(600):
            if self.seen and self.seen[-1] == status:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"health never became {status}: {self.seen}")


def outage_lines(log: Path) -> Counter[str]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert not [line for line in lines if "exc_info" in line or line["level"] == "ERROR"]
    return Counter(
        line["message"] for line in lines if line["name"] == "libs.common.database_outage"
    )


async def test_a_database_crash_under_load(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(private_postgres())
        url = await stack.enter_async_context(migrated_database(server.url))
        env = {}
        for prefix in ("POOL", "CREDITS"):
            env |= {
                f"{prefix}_DATABASE_URL": url,
                f"{prefix}_PORT": "0",
                f"{prefix}_LOG_LEVEL": "INFO",
            }
        logs = {name: tmp_path / f"{name}.log" for name in ("pool", "credits")}
        services: dict[str, ServiceProcess] = {
            name: await stack.enter_async_context(spawned(name, env, log=logs[name]))
            for name in ("pool", "credits")
        }
        channels = {name: tls.channel(s.address) for name, s in services.items()}
        for channel in channels.values():
            stack.push_async_callback(channel.close)

        pool = Company(pool_pb2_grpc.PoolServiceStub(channels["pool"]), str(uuid.uuid4()), {})
        for office in ("o0", "o1", "o2", "o3"):
            await pool.office(office, "USD")
        await pool.add("o0", "connect", UNITS)
        await pool.enable("USD")  # every unit is claimable by any office
        credits = CreditsCompany(credits_pb2_grpc.CreditsServiceStub(channels["credits"]))
        await credits.office("hq", allowance=1_000_000)

        async def acquire(request_id: str) -> list[str]:
            office = f"o{1 + hash(request_id) % 3}"
            response = await pool.stub.Acquire(
                ppb.AcquireRequest(
                    request_id=request_id,
                    company_id=pool.company_id,
                    office_id=pool.offices[office],
                    license_type="connect",
                    quantity=1,
                    assignees=[ppb.Assignee(kind=ppb.ASSIGNEE_KIND_USER, id=request_id)],
                ),
                timeout=30,
            )
            return [u.unit_id for u in response.units]

        async def record_usage(request_id: str) -> list[str]:
            request = credits.usage_request("hq", 1, request_id=request_id)
            response = await credits.stub.RecordUsage(request, timeout=30)
            return [response.usage.usage_id]

        loads = {"pool": Load("pool", acquire), "credits": Load("credits", record_usage)}
        watches = {name: HealthWatch(channel) for name, channel in channels.items()}
        stop_watching = asyncio.Event()
        running = [asyncio.create_task(load.run()) for load in loads.values()]
        running += [asyncio.create_task(w.run(stop_watching)) for w in watches.values()]

        for load in loads.values():
            await load.until_acknowledged(50)
        await server.crash()
        for name in loads:
            await loads[name].until_failed()
            await watches[name].until(NOT_SERVING)
        await server.start()  # same data directory and port: crash recovery, then up
        for name in loads:
            await watches[name].until(SERVING)
            await loads[name].until_acknowledged(50)  # recovered without a restart

        for load in loads.values():
            load.stop.set()
        stop_watching.set()
        await asyncio.gather(*running)

        for name, load in loads.items():
            assert set(load.failed.values()) == {
                (grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE)
            }, name
            assert watches[name].seen == [SERVING, NOT_SERVING, SERVING], name
            # Retried with the same request id, a failed call takes effect exactly once.
            retried = await asyncio.gather(*(load.call(r) for r in load.failed))
            load.acknowledged.update(zip(load.failed, retried, strict=True))

        for name, service in services.items():
            assert service.process.returncode is None, f"{name} exited"
            assert outage_lines(logs[name]) == {
                "database unreachable: answering UNAVAILABLE and NOT_SERVING until it answers": 1,
                "database reachable again": 1,
            }, name

        db = await create_pool(url, 2)
        stack.push_async_callback(db.close)
        await assert_every_allocation_stored(db, pool.company_id, loads["pool"])
        await assert_every_usage_stored(db, credits.company_id, loads["credits"])
        check = await credits.check()
        assert check.consistent, check.violations


async def assert_every_allocation_stored(db: asyncpg.Pool, company_id: str, load: Load) -> None:
    handed_out = [unit for units in load.acknowledged.values() for unit in units]
    assert len(handed_out) == len(set(handed_out)) == len(load.acknowledged)
    rows = await db.fetch(
        "SELECT unit_id::text, assignee_id FROM pool.units"
        " WHERE company_id = $1::uuid AND state = 'ASSIGNED'",
        company_id,
    )
    assert {r["unit_id"] for r in rows} == set(handed_out)
    assert {r["assignee_id"] for r in rows} == set(load.acknowledged)
    free = await db.fetchval(
        "SELECT count(*) FROM pool.free_units WHERE company_id = $1::uuid", company_id
    )
    assert free == UNITS - len(handed_out)


async def assert_every_usage_stored(db: asyncpg.Pool, company_id: str, load: Load) -> None:
    recorded = [usage for usages in load.acknowledged.values() for usage in usages]
    assert len(recorded) == len(set(recorded)) == len(load.acknowledged)
    stored = await db.fetch(
        "SELECT usage_id::text FROM credits.usage_records WHERE company_id = $1::uuid", company_id
    )
    assert sorted(r["usage_id"] for r in stored) == sorted(recorded)
