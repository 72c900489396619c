"""Overload: far more concurrent Acquire calls than the service takes at once.

Every call is answered by the service itself: a unit, NO_LICENSE_AVAILABLE, or
RESOURCE_EXHAUSTED OVERLOADED with a retry delay. None comes back CANCELLED, which is
what gRPC core answered for calls beyond its backlog of calls the service had not taken
yet (1,000 by default) before the service raised that bound; no unit is handed out twice.
"""

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2

from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.pool import details_of, reason_of
from tests.support.processes import spawned
from tests.support.races import assert_database_matches, pool_with_claimable_units, race_acquire

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

CALLERS = 2000  # twice gRPC core's default backlog of untaken calls
UNITS = 100
IN_FLIGHT_CAP = 8  # so that the service surely sheds some of the calls it takes
# Every call has a deadline; this one leaves a slow CI machine time to take and answer all
# of them (a loaded 2-core machine needed under 5 s). Refusing in time what cannot be
# served before a tighter deadline is the writer's part: tests/unit/test_coalescing.py.
DEADLINE_SECONDS = 8.0


async def test_every_call_under_overload_gets_a_precise_answer(
    database_url: str, db: asyncpg.Pool
) -> None:
    env = {
        "POOL_DATABASE_URL": database_url,
        "POOL_PORT": "0",
        "POOL_LOG_LEVEL": "WARNING",
        "POOL_MAX_CONCURRENT_RPCS": str(IN_FLIGHT_CAP),
    }
    async with (
        spawned("pool", env) as service,
        tls.channel(service.address) as channel,
    ):
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        company = await pool_with_claimable_units(stub, units=UNITS, offices=3)
        outcome = await race_acquire([stub], company, CALLERS, deadline_seconds=DEADLINE_SECONDS)

    clean = {
        (grpc.StatusCode.FAILED_PRECONDITION, "NO_LICENSE_AVAILABLE"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED"),
    }
    assert set(outcome.failures) <= clean, outcome.failures
    overloaded = [e for e in outcome.errors if e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert overloaded  # the cap was reached: the shedding path is what this test looks at
    for error in overloaded:
        assert reason_of(error) == "OVERLOADED"
        (retry,) = details_of(error, error_details_pb2.RetryInfo)
        assert retry.retry_delay.ToNanoseconds() > 0
    assert len(outcome.unit_ids) + len(outcome.errors) == CALLERS
    assert len(outcome.unit_ids) == len(set(outcome.unit_ids))
    await assert_database_matches(db, company, outcome, total=UNITS)
