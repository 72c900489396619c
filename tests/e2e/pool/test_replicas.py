"""Two pool-service processes on one database: still no unit handed out twice."""

from contextlib import AsyncExitStack

import asyncpg
import grpc
import pytest

from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.processes import spawned
from tests.support.races import assert_database_matches, pool_with_claimable_units, race_acquire

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_two_replicas_never_hand_out_a_unit_twice(
    database_url: str, db: asyncpg.Pool
) -> None:
    env = {"POOL_DATABASE_URL": database_url, "POOL_PORT": "0", "POOL_LOG_LEVEL": "WARNING"}
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(spawned("pool", env)) for _ in range(2)]
        channels = [tls.channel(r.address) for r in replicas]
        for channel in channels:
            stack.push_async_callback(channel.close)
        stubs = [pool_pb2_grpc.PoolServiceStub(c) for c in channels]

        company = await pool_with_claimable_units(stubs[0], units=100, offices=5)
        outcome = await race_acquire(stubs, company, callers=500)

        assert len(outcome.unit_ids) == len(set(outcome.unit_ids)) == 100
        assert outcome.failures == {
            (grpc.StatusCode.FAILED_PRECONDITION, "NO_LICENSE_AVAILABLE"): 400
        }
        await assert_database_matches(db, company, outcome, total=100)
