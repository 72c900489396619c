"""Alembic, per service schema: each service migrates only its own schema.

A service's `migrations/env.py` calls `run_env(schema)`; `upgrade` applies a service's
migrations to a database (from `python -m services.<svc> migrate`, `make run`, tests).

Least privilege: each migration run also creates the service's own database role
(`role_of(schema)`, e.g. `licensing_pool`) and grants it the use of its schema's tables,
sequences and functions and nothing else, so a service connected as its role cannot read
another service's schema. The role is created without a password: where the database
asks for one, the operator sets it (`ALTER ROLE ... PASSWORD`, the service's Secret).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from libs.common.database import create_engine, sqlalchemy_url


def upgrade(database_url: str, migrations_dir: Path, schema: str, revision: str = "head") -> None:
    """Applies the migrations of one service up to `revision` (blocking; call it off the
    event loop)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute: URLs may hold '%' that the ini parser would interpolate.
    config.attributes["url"] = sqlalchemy_url(database_url)
    config.attributes["schema"] = schema
    command.upgrade(config, revision)


def role_of(schema: str) -> str:
    """The database role a service connects as."""
    return f"licensing_{schema}"


def grant_own_schema(connection: Connection, schema: str) -> None:
    """Creates the service's role (once per database server) and grants it its schema."""
    role = role_of(schema)
    # Roles belong to the server, not the database: databases migrated at the same
    # time may race to create it; the loser finds it there.
    connection.execute(
        text(
            f"""DO $$ BEGIN
                CREATE ROLE {role} LOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$"""
        )
    )
    for statement in (
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role}",
    ):
        connection.execute(text(statement))


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
            grant_own_schema(connection, schema)

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
