"""Shared fixtures: one fresh, migrated database per test run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from libs.common.database import create_pool
from tests.support import tls
from tests.support.database import migrated_database, server_url

# The whole suite runs with mutual TLS on: one CA and certificates for the run, found
# through the environment by services in this process and in child processes alike.
tls.install()


@pytest.fixture(scope="session")
def db_server() -> Iterator[str]:
    with server_url() as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(db_server: str) -> AsyncIterator[str]:
    async with migrated_database(db_server) as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool for tests that look at the database directly."""
    pool = await create_pool(database_url, 4)
    yield pool
    await pool.close()
