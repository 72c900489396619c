"""Concurrency over real gRPC against a real PostgreSQL."""

import grpc
import pytest

from licensing.pool.v1 import pool_pb2_grpc
from tests.support.races import assert_database_matches, pool_with_claimable_units, race_acquire

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_last_unit_race_500_callers_100_units(
    stub: pool_pb2_grpc.PoolServiceStub, db
) -> None:  # type: ignore[no-untyped-def]
    company = await pool_with_claimable_units(stub, units=100, offices=5)
    outcome = await race_acquire([stub], company, callers=500)
    assert len(outcome.unit_ids) == 100
    assert len(set(outcome.unit_ids)) == 100
    assert outcome.failures == {(grpc.StatusCode.FAILED_PRECONDITION, "NO_LICENSE_AVAILABLE"): 400}
    await assert_database_matches(db, company, outcome, total=100)
