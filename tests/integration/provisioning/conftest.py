from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from tests.support.provisioning import Platform, Tenant, new_tenant, running_provisioning


@pytest.fixture(scope="session")
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def platform(database_url: str) -> AsyncIterator[Platform]:
    async with running_provisioning(database_url) as running:
        yield running


@pytest.fixture
def tenant(platform: Platform) -> Tenant:
    return new_tenant(platform)
