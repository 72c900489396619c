"""The last-unit race: many concurrent Acquire calls against a pool with few units."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import grpc

from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.pool import Company, reason_of, rid
from tests.support.processes import spawned


@dataclass
class RaceOutcome:
    unit_ids: list[str]
    failures: Counter[tuple[grpc.StatusCode, str]]
    errors: list[grpc.aio.AioRpcError]


async def pool_with_claimable_units(
    stub: pool_pb2_grpc.PoolServiceStub, units: int, offices: int
) -> Company:
    company = Company(stub, str(uuid.uuid4()), {})
    for index in range(offices):
        await company.office(f"o{index}", "USD")
    await company.add("o0", "connect", units)
    await company.enable("USD")  # every unit is now claimable by any office
    return company


async def race_acquire(
    stubs: list[pool_pb2_grpc.PoolServiceStub],
    company: Company,
    callers: int,
    deadline_seconds: float = 60,
) -> RaceOutcome:
    """`callers` concurrent Acquire of one unit, spread over offices and stubs, each with
    a deadline of `deadline_seconds`."""
    offices = list(company.offices.values())

    async def one(index: int) -> pb.AcquireResponse | grpc.aio.AioRpcError:
        stub = stubs[index % len(stubs)]
        try:
            response: pb.AcquireResponse = await stub.Acquire(
                pb.AcquireRequest(
                    request_id=rid(),
                    company_id=company.company_id,
                    office_id=offices[1 + index % (len(offices) - 1)]
                    if len(offices) > 1
                    else offices[0],
                    license_type="connect",
                    quantity=1,
                    assignees=[pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id=f"user-{index}")],
                ),
                timeout=deadline_seconds,
            )
            return response
        except grpc.aio.AioRpcError as error:
            return error

    results = await asyncio.gather(*(one(i) for i in range(callers)))
    unit_ids = [u.unit_id for r in results if isinstance(r, pb.AcquireResponse) for u in r.units]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    failures: Counter[tuple[grpc.StatusCode, str]] = Counter(
        (e.code(), reason_of(e)) for e in errors
    )
    return RaceOutcome(unit_ids, failures, errors)


async def assert_database_matches(
    db: asyncpg.Pool, company: Company, outcome: RaceOutcome, total: int
) -> None:
    rows = await db.fetch(
        "SELECT unit_id::text, state, assignee_id FROM pool.units WHERE company_id = $1::uuid",
        company.company_id,
    )
    assigned = {r["unit_id"] for r in rows if r["state"] == "ASSIGNED"}
    assert assigned == set(outcome.unit_ids)
    assert len({r["assignee_id"] for r in rows if r["state"] == "ASSIGNED"}) == len(assigned)
    free = await db.fetchval(
        "SELECT count(*) FROM pool.free_units WHERE company_id = $1::uuid", company.company_id
    )
    assert free == total - len(assigned)
    assert len(rows) == total


async def assert_two_replicas_never_hand_out_a_unit_twice(
    env: Mapping[str, str], db: asyncpg.Pool
) -> None:
    """Two pool-service processes started with `env` (their database among it), 500
    callers racing for 100 units over both: each unit is handed out once, the database
    (read through `db`) agrees."""
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(spawned("pool", env)) for _ in range(2)]
        channels = [tls.channel(r.address) for r in replicas]
        for channel in channels:
            stack.push_async_callback(channel.close)
        await assert_100_units_handed_out_once(
            [pool_pb2_grpc.PoolServiceStub(c) for c in channels], db
        )


async def assert_100_units_handed_out_once(
    stubs: list[pool_pb2_grpc.PoolServiceStub], db: asyncpg.Pool
) -> None:
    """500 callers racing over `stubs` for 100 claimable units: each unit is handed out
    once, the other 400 callers are refused NO_LICENSE_AVAILABLE, the database agrees."""
    company = await pool_with_claimable_units(stubs[0], units=100, offices=5)
    outcome = await race_acquire(stubs, company, callers=500)

    assert len(outcome.unit_ids) == len(set(outcome.unit_ids)) == 100
    assert outcome.failures == {(grpc.StatusCode.FAILED_PRECONDITION, "NO_LICENSE_AVAILABLE"): 400}
    await assert_database_matches(db, company, outcome, total=100)
