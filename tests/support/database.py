"""The PostgreSQL server tests run against, and a fresh database per test run.

In order: `TEST_DATABASE_URL` (a server URL; a database is created on it); a
PostgreSQL container (testcontainers' generic container API) when a Docker engine
answers; the embedded `pgserver`. All three run the same major version, PostgreSQL 16.
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

# The major version of the embedded server (pgserver) and of deploy/overlays/dev.
POSTGRES_IMAGE = "postgres:16-alpine"
_USER = _PASSWORD = "test"


def docker_answers() -> bool:
    """Whether a Docker engine answers a ping (within 2 s) where DOCKER_HOST points."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


def server_kind() -> str:
    """Which server the tests get: "given", "container" or "embedded"."""
    if os.environ.get("TEST_DATABASE_URL"):
        return "given"
    return "container" if docker_answers() else "embedded"


def postgres_container():  # type: ignore[no-untyped-def]
    """A PostgreSQL container on testcontainers' core API (no deprecated module): ready
    once `pg_isready` answers over TCP, which the image's init-time server never does."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import ExecWaitStrategy

    return (
        DockerContainer(POSTGRES_IMAGE)
        .with_env("POSTGRES_USER", _USER)
        .with_env("POSTGRES_PASSWORD", _PASSWORD)
        .with_env("POSTGRES_DB", _USER)
        .with_exposed_ports(5432)
        .waiting_for(
            ExecWaitStrategy(["pg_isready", "-h", "127.0.0.1", "-U", _USER]).with_startup_timeout(
                120
            )
        )
    )


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server the tests may create databases on."""
    kind = server_kind()
    if kind == "given":
        yield os.environ["TEST_DATABASE_URL"]
    elif kind == "container":
        with postgres_container() as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(5432)
            yield f"postgresql://{_USER}:{_PASSWORD}@{host}:{port}/{_USER}"
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
