"""SIGTERM: in-flight calls finish, the process exits cleanly, nothing is half-done."""

import asyncio
import signal

import asyncpg
import grpc
import pytest

from licensing.pool.v1 import pool_pb2_grpc
from tests.support.processes import spawn
from tests.support.races import pool_with_claimable_units, race_acquire

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_sigterm_lets_in_flight_calls_finish(database_url: str, db: asyncpg.Pool) -> None:
    env = {"POOL_DATABASE_URL": database_url, "POOL_PORT": "0", "POOL_LOG_LEVEL": "WARNING"}
    service = await spawn("pool", env)
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = pool_pb2_grpc.PoolServiceStub(channel)
            company = await pool_with_claimable_units(stub, units=300, offices=3)
            racing = asyncio.create_task(race_acquire([stub], company, callers=300))
            await asyncio.sleep(0.2)
            service.process.send_signal(signal.SIGTERM)
            outcome = await racing
            code = await asyncio.wait_for(service.process.wait(), timeout=30)
    finally:
        service.kill()
    assert code == 0
    assert len(outcome.unit_ids) > 0
    # Every call either finished or was refused before it started (the server no longer
    # takes calls once it stops); none was cut off half-done.
    refused = {(grpc.StatusCode.UNAVAILABLE, ""), (grpc.StatusCode.CANCELLED, "")}
    assert set(outcome.failures) <= refused
    assigned = await db.fetchval(
        "SELECT count(*) FROM pool.units WHERE company_id = $1::uuid AND state = 'ASSIGNED'",
        company.company_id,
    )
    assert assigned == len(outcome.unit_ids) == len(set(outcome.unit_ids))
