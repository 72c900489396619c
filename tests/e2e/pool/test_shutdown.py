"""SIGTERM: in-flight calls finish, the process exits cleanly, nothing is half-done."""

import asyncio
import signal

import asyncpg
import pytest

from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.processes import spawn
from tests.support.races import pool_with_claimable_units, race_acquire

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

# More calls than the service takes at once: when SIGTERM arrives most of them wait in
# gRPC core, not yet taken by the service, and stopping the server at once would drop them.
CALLERS = 600


async def test_sigterm_lets_every_call_in_flight_finish(
    database_url: str, db: asyncpg.Pool
) -> None:
    env = {
        "POOL_DATABASE_URL": database_url,
        "POOL_PORT": "0",
        "POOL_LOG_LEVEL": "WARNING",
        # No shedding: this test is about shutdown, not about the cap on calls in flight.
        "POOL_MAX_CONCURRENT_RPCS": str(2 * CALLERS),
    }
    service = await spawn("pool", env)
    try:
        async with tls.channel(service.address) as channel:
            stub = pool_pb2_grpc.PoolServiceStub(channel)
            company = await pool_with_claimable_units(stub, units=CALLERS, offices=3)
            racing = asyncio.create_task(race_acquire([stub], company, callers=CALLERS))
            # Every call was sent before the first one is answered; SIGTERM once the
            # service is handing out units.
            await handing_out(db, company.company_id)
            service.process.send_signal(signal.SIGTERM)
            outcome = await racing
            code = await asyncio.wait_for(service.process.wait(), timeout=30)
    finally:
        service.kill()
    assert code == 0
    assert not outcome.failures  # every call in flight at SIGTERM was answered, and OK
    assert len(outcome.unit_ids) == len(set(outcome.unit_ids)) == CALLERS
    assert await assigned(db, company.company_id) == CALLERS


async def handing_out(db: asyncpg.Pool, company_id: str) -> None:
    """Returns once the first unit of the company is assigned."""
    while True:
        if await assigned(db, company_id):
            return
        await asyncio.sleep(0.01)


async def assigned(db: asyncpg.Pool, company_id: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pool.units WHERE company_id = $1::uuid AND state = 'ASSIGNED'",
        company_id,
    )
    return count
