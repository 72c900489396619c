"""Concurrency over real gRPC against a real PostgreSQL."""

import asyncio

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


async def test_last_unit_races_of_many_companies_at_once(
    stub: pool_pb2_grpc.PoolServiceStub, db
) -> None:  # type: ignore[no-untyped-def]
    # Batches serve many companies in one transaction: each company's race is still its own.
    companies = [await pool_with_claimable_units(stub, units=10, offices=3) for _ in range(20)]
    outcomes = await asyncio.gather(*(race_acquire([stub], c, callers=20) for c in companies))
    for company, outcome in zip(companies, outcomes, strict=True):
        assert len(set(outcome.unit_ids)) == len(outcome.unit_ids) == 10
        assert outcome.failures == {
            (grpc.StatusCode.FAILED_PRECONDITION, "NO_LICENSE_AVAILABLE"): 10
        }
        await assert_database_matches(db, company, outcome, total=10)
