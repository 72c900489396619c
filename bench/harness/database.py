"""The PostgreSQL server the benchmark uses, and scratch databases on it."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.harness.cpu import process_cpu

ENV_URL = "BENCH_DATABASE_URL"


def resolve_admin_url() -> tuple[str, str]:
    """The server's URL and where it came from: `BENCH_DATABASE_URL`, else embedded.

    The embedded server lives in a temporary folder that it deletes when we exit.
    """
    url = os.environ.get(ENV_URL)
    if url:
        return url, ENV_URL
    from libs.common import embedded_db

    data_dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    return embedded_db.start(data_dir, cleanup=True), "embedded"


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _execute(url: str, statements: tuple[str, ...]) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _fetch(url: str, query: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
        return rows
    finally:
        await connection.close()


def execute(url: str, *statements: str) -> None:
    """Runs statements one by one, each in its own implicit transaction."""
    asyncio.run(_execute(url, statements))


def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Runs one query and returns its rows."""
    return asyncio.run(_fetch(url, query, args))


def fetchval(url: str, query: str, *args: Any) -> Any:
    """The first column of the first row of a query."""
    rows = fetch(url, query, *args)
    return rows[0][0] if rows else None


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """Creates an empty database, yields its URL, drops it afterwards."""
    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}".lower()
    execute(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_facts(admin_url: str) -> dict[str, str]:
    """The server's version and the settings that bound a commit-per-request design."""
    names = ("server_version", "synchronous_commit", "fsync", "max_connections", "shared_buffers")
    rows = fetch(
        admin_url,
        "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
        list(names),
    )
    facts = {row["name"]: row["setting"] + (row["unit"] or "") for row in rows}
    facts["version"] = str(fetchval(admin_url, "SELECT version()"))
    return facts


async def _postmaster_pid(admin_url: str) -> int | None:
    connection = await asyncpg.connect(admin_url)
    try:  # read /proc while the backend is sure to exist
        backend = process_cpu(int(await connection.fetchval("SELECT pg_backend_pid()")))
        if backend is None or not backend.command.startswith("postgres"):
            return None
        parent = process_cpu(backend.ppid)
        if parent is None or not parent.command.startswith("postgres"):
            return None
        return backend.ppid
    finally:
        await connection.close()


def postmaster_pid(admin_url: str) -> int | None:
    """The server's postmaster, when it runs on this machine (else None).

    A backend's parent is the postmaster; a server elsewhere (or in another pid
    namespace) has no such process here, which the command names show.
    """
    return asyncio.run(_postmaster_pid(admin_url))
