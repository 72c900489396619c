from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp
from tests.support.pool import Company, new_company, running_pool


@pytest.fixture
def clock() -> FakeClock:
    # Years ahead of the real clock: services with the database clock that share this
    # database (other tests' processes) never see these holds as due.
    return FakeClock(datetime(2036, 1, 15, 12, tzinfo=UTC))


@pytest_asyncio.fixture(loop_scope="session")
async def pool_service(
    database_url: str, clock: FakeClock
) -> AsyncIterator[tuple[PoolApp, pool_pb2_grpc.PoolServiceStub]]:
    async with running_pool(database_url, clock, sweep_interval_seconds=3600) as running:
        yield running


@pytest.fixture
def stub(
    pool_service: tuple[PoolApp, pool_pb2_grpc.PoolServiceStub],
) -> pool_pb2_grpc.PoolServiceStub:
    return pool_service[1]


@pytest.fixture
def company(stub: pool_pb2_grpc.PoolServiceStub) -> Company:
    return new_company(stub)
