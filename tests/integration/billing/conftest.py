from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from licensing.billing.v1 import billing_pb2_grpc
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp
from tests.support.billing import Shop, running_billing
from tests.support.pool import running_pool


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(loop_scope="session")
async def pool_service(
    database_url: str, clock: FakeClock
) -> AsyncIterator[tuple[PoolApp, pool_pb2_grpc.PoolServiceStub]]:
    async with running_pool(database_url, clock, sweep_interval_seconds=3600) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def billing_stub(
    database_url: str,
    clock: FakeClock,
    pool_service: tuple[PoolApp, pool_pb2_grpc.PoolServiceStub],
) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    address = f"127.0.0.1:{pool_service[0].port}"
    async with running_billing(database_url, address, clock) as (_, stub):
        yield stub


@pytest.fixture
def shop(
    billing_stub: billing_pb2_grpc.BillingServiceStub,
    pool_service: tuple[PoolApp, pool_pb2_grpc.PoolServiceStub],
) -> Shop:
    return Shop(billing_stub, pool_service[1])
