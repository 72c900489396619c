from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2_grpc
from services.credits.app import CreditsApp
from tests.support.credits import CreditsCompany, running_credits


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(loop_scope="session")
async def credits_service(
    database_url: str, clock: FakeClock
) -> AsyncIterator[tuple[CreditsApp, credits_pb2_grpc.CreditsServiceStub]]:
    async with running_credits(database_url, clock) as running:
        yield running


@pytest.fixture
def stub(
    credits_service: tuple[CreditsApp, credits_pb2_grpc.CreditsServiceStub],
) -> credits_pb2_grpc.CreditsServiceStub:
    return credits_service[1]


@pytest.fixture
def company(stub: credits_pb2_grpc.CreditsServiceStub) -> CreditsCompany:
    """A fresh credits company (no offices yet)."""
    return CreditsCompany(stub)
