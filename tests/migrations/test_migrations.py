"""Every service's Alembic migrations against real PostgreSQL: from an empty database to
head, applied again (a restart, a second replica), and by many processes at once (every
replica's `migrate` init container starting together). Each end state is the same schema."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path

import asyncpg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from libs.common.database import plain_url
from tests.support.database import fresh_database

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

SERVICES = ("pool", "credits", "billing", "provisioning")
ROOT = Path(__file__).resolve().parents[2]
REPLICAS = 2  # migrate processes per service in the concurrent run (8 at once)

Snapshot = dict[str, list[tuple[object, ...]]]


def app(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"services.{name}.app")


def head_of(name: str) -> str:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "services" / name / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def snapshot(url: str) -> Snapshot:
    """What the migrations made: versions, tables and columns, indexes, constraints."""
    schemas = list(SERVICES)
    connection = await asyncpg.connect(plain_url(url))
    try:
        versions = []
        for schema in schemas:
            rows = await connection.fetch(f"SELECT version_num FROM {schema}.alembic_version")
            versions.append((schema, *sorted(r["version_num"] for r in rows)))
        columns = await connection.fetch(
            "SELECT table_schema, table_name, column_name, data_type, is_nullable,"
            " column_default FROM information_schema.columns WHERE table_schema = ANY($1)"
            " ORDER BY 1, 2, 3",
            schemas,
        )
        indexes = await connection.fetch(
            "SELECT schemaname, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = ANY($1) ORDER BY 1, 2",
            schemas,
        )
        constraints = await connection.fetch(
            "SELECT n.nspname, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = ANY($1) ORDER BY 1, 2, 3",
            schemas,
        )
    finally:
        await connection.close()
    return {
        "versions": versions,
        "columns": [tuple(r) for r in columns],
        "indexes": [tuple(r) for r in indexes],
        "constraints": [tuple(r) for r in constraints],
    }


async def migrate_all(url: str) -> None:
    for name in SERVICES:
        await asyncio.to_thread(app(name).migrate, url)


async def test_from_empty_to_head_then_again_changes_nothing(db_server: str) -> None:
    async with fresh_database(db_server) as url:
        await migrate_all(url)
        first = await snapshot(url)
        assert first["versions"] == [(name, head_of(name)) for name in SERVICES]
        for name in SERVICES:
            tables = {c[1] for c in first["columns"] if c[0] == name}
            assert tables - {"alembic_version"}, f"{name}: no table created"
        # A restart, or a second replica after the first: nothing to do, nothing changes.
        await migrate_all(url)
        assert await snapshot(url) == first
        await migrate_all(url)
        assert await snapshot(url) == first


async def test_many_processes_migrating_at_once_end_in_the_same_schema(db_server: str) -> None:
    async with fresh_database(db_server) as sequential:
        await migrate_all(sequential)
        expected = await snapshot(sequential)
    async with fresh_database(db_server) as url:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith("_DATABASE_URL") and k != "DATABASE_URL"
        }
        env["DATABASE_URL"] = url
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{name}",
                "migrate",
                env={**env, f"{name.upper()}_LOG_LEVEL": "WARNING"},
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(REPLICAS)
            for name in SERVICES
        ]
        outputs = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in processes)), timeout=240
        )
        for process, (output, _) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, output.decode(errors="replace")[-2000:]
        assert await snapshot(url) == expected
