"""Alembic, per service schema: each service migrates only its own schema.

A service's `migrations/env.py` calls `run_env(schema)`; `upgrade` applies a service's
migrations to a database (from `python -m services.<svc> migrate`, `make run`, tests).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from libs.common.database import create_engine, sqlalchemy_url


def upgrade(database_url: str, migrations_dir: Path, schema: str) -> None:
    """Applies every migration of one service (blocking; call it off the event loop)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute: URLs may hold '%' that the ini parser would interpolate.
    config.attributes["url"] = sqlalchemy_url(database_url)
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def run_env() -> None:
    """The body of every service's `env.py` (online migrations only)."""
    config = context.config
    schema: str = config.attributes["schema"]

    def migrate(connection: Connection) -> None:
        # Replicas starting together migrate one at a time (released at commit).
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"migrate/{schema}"}
        )
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        context.configure(
            connection=connection,
            version_table="alembic_version",
            version_table_schema=schema,
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        url: str = config.attributes["url"]
        engine = create_engine(url, 1)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
            await connection.commit()
        await engine.dispose()

    asyncio.run(main())


def execute_script(script: str) -> None:
    """Runs a DDL script statement by statement (asyncpg prepares one at a time).

    Statements are separated by a semicolon at the end of a line.
    """
    from alembic import op

    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)
