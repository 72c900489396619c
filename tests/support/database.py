"""The PostgreSQL server tests run against, and a fresh database per test run.

In order: `TEST_DATABASE_URL` (a server URL; a database is created on it); a
testcontainers PostgreSQL when a Docker engine answers; the embedded `pgserver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from libs.common import embedded_db
from libs.common.database import plain_url
from services.billing.app import migrate as migrate_billing
from services.credits.app import migrate as migrate_credits
from services.pool.app import migrate as migrate_pool
from services.provisioning.app import migrate as migrate_provisioning

MIGRATIONS = [migrate_pool, migrate_credits, migrate_billing, migrate_provisioning]


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server the tests may create databases on."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
    else:
        # Short path: the server's unix socket lives in the data directory.
        data_dir = Path(tempfile.mkdtemp(prefix="lpg-", dir="/tmp"))
        yield embedded_db.start(data_dir, cleanup=True)


def with_database(url: str, name: str) -> str:
    return make_url(plain_url(url)).set(database=name).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_database(server: str):  # type: ignore[no-untyped-def]
    """Creates an empty database for this test run; drops it afterwards."""
    name = f"licensing_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(server, name)
    finally:
        admin = await asyncpg.connect(plain_url(server))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def migrated_database(server: str) -> AsyncIterator[str]:
    """A fresh database with every service's schema, dropped afterwards."""
    async with fresh_database(server) as url:
        for migrate in MIGRATIONS:
            await asyncio.to_thread(migrate, url)
        yield url
