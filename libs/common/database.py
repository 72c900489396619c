"""Database connections: an asyncpg pool for hot paths, a SQLAlchemy engine elsewhere."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.common.settings import ServiceSettings


def plain_url(url: str) -> str:
    """The URL as libpq/asyncpg spell it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    """The URL with SQLAlchemy's asyncpg driver."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections skip the full session reset (a round trip per use): the
    services keep no session state (no LISTEN, no settings, no session lock left behind:
    the pool's live snapshot releases its own or ends the session); an open transaction
    is still rolled back by asyncpg."""


async def create_pool(
    url: str,
    size: int,
    connect_timeout: float = 5.0,
    application_name: str | None = None,
    statement_cache_size: int = 100,
    **kwargs: Any,
) -> asyncpg.Pool:
    """An asyncpg pool; statements are prepared and cached per connection.

    Behind a PgBouncer in transaction pooling mode, one client connection is served by
    many server connections in turn: a statement prepared on one is unknown on the
    next. PgBouncer 1.21+ with `max_prepared_statements` maps them itself; before,
    `statement_cache_size=0` makes asyncpg parse each statement again where it runs
    (unnamed statements, in the same exchange as its execution).

    Connections are made on demand, and a lost one is replaced on its next use, so the
    pool recovers from a database restart by itself. It keeps no floor of idle
    connections: asyncpg would re-make it in the background all through an outage,
    logging a traceback each time. One query at start still fails a misconfigured
    service at once. Making a connection gives up after `connect_timeout` seconds (a
    database host that does not answer at all fails calls, instead of holding them).
    `application_name` names the sessions (pg_stat_activity shows which process holds
    which connection).
    """
    if application_name is not None:
        kwargs["server_settings"] = {
            **kwargs.get("server_settings", {}),
            "application_name": application_name,
        }
    pool = await asyncpg.create_pool(
        plain_url(url),
        min_size=0,
        max_size=size,
        timeout=connect_timeout,
        init=_init_connection,
        reset=_keep_session,
        statement_cache_size=statement_cache_size,
        **kwargs,
    )
    assert pool is not None
    try:
        await pool.execute("SELECT 1")
    except BaseException:
        await pool.close()
        raise
    return pool


async def service_pools(
    settings: ServiceSettings, application_name: str | None = None
) -> tuple[asyncpg.Pool, asyncpg.Pool | None]:
    """A service's pools: on its database, and on its read replica when it has one
    (`read_database_url`; None when unset), with the same size and statement cache."""

    async def pool(url: str) -> asyncpg.Pool:
        return await create_pool(
            url,
            settings.db_pool_size,
            settings.database_connect_timeout_seconds,
            application_name=application_name,
            statement_cache_size=settings.database_statement_cache_size,
        )

    db = await pool(settings.database_url)
    if not settings.read_database_url:
        return db, None
    try:
        return db, await pool(settings.read_database_url)
    except BaseException:
        await db.close()
        raise


def create_engine(url: str, size: int) -> AsyncEngine:
    """A SQLAlchemy async engine on asyncpg."""
    return create_async_engine(sqlalchemy_url(url), pool_size=size, pool_pre_ping=True)
