"""Least-privilege database roles: each service's role uses its own schema only."""

from __future__ import annotations

import asyncpg
import pytest

from libs.common.migrations import role_of

SCHEMAS = ("pool", "billing", "credits", "provisioning")


async def tables(db: asyncpg.Pool, schema: str) -> list[str]:
    rows = await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return [row["table_name"] for row in rows]


async def as_role(db: asyncpg.Pool, role: str, query: str) -> None:
    async with db.acquire() as connection, connection.transaction():
        await connection.execute(f"SET LOCAL ROLE {role}")
        await connection.fetch(query)


@pytest.mark.parametrize("reader", SCHEMAS)
async def test_a_service_role_reads_its_own_tables_and_no_other_s(
    db: asyncpg.Pool, reader: str
) -> None:
    for table in await tables(db, reader):
        await as_role(db, role_of(reader), f"SELECT * FROM {reader}.{table} LIMIT 1")
    for other in SCHEMAS:
        if other == reader:
            continue
        found = await tables(db, other)
        assert found, f"{other} has no tables"
        for table in found:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await as_role(db, role_of(reader), f"SELECT * FROM {other}.{table} LIMIT 1")


async def test_the_pool_role_cannot_read_billing_plans(db: asyncpg.Pool) -> None:
    billing = await tables(db, "billing")
    assert billing
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(db, role_of("pool"), f"SELECT * FROM billing.{billing[0]}")


async def test_a_service_role_may_not_change_its_schema(db: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(db, role_of("pool"), "CREATE TABLE pool.intruder (id int)")
