"""Shared fixtures: one fresh, migrated database per test run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from libs.common.database import create_pool
from services.billing.app import migrate as migrate_billing
from services.credits.app import migrate as migrate_credits
from services.pool.app import migrate as migrate_pool
from services.provisioning.app import migrate as migrate_provisioning
from tests.support.database import fresh_database, server_url

MIGRATIONS = [migrate_pool, migrate_credits, migrate_billing, migrate_provisioning]


@pytest.fixture(scope="session")
def db_server() -> Iterator[str]:
    with server_url() as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(db_server: str) -> AsyncIterator[str]:
    async with fresh_database(db_server) as url:
        for migrate in MIGRATIONS:
            await asyncio.to_thread(migrate, url)
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool for tests that look at the database directly."""
    pool = await create_pool(database_url, 4)
    yield pool
    await pool.close()
