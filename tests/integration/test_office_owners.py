"""An office id belongs to the first company that registers it, across every company, now
that the offices tables are keyed by (company, office): two companies registering the
same new id at once, in the pool and in credits, end with one owner, and the other is
refused (the pool's put answers None, credits' raises OFFICE_NOT_FOUND)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from libs.common.errors import DomainError
from services.credits.domain.model import OfficeAccount, OveragePolicy
from services.credits.repository.offices import OfficeRepository
from services.pool.domain.model import Office, PlanKind
from services.pool.repository.offices import Offices

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime(2026, 1, 15, tzinfo=UTC)


async def race(
    db: asyncpg.Pool, register: Callable[[asyncpg.Connection, uuid.UUID], Awaitable[object]]
) -> tuple[uuid.UUID, uuid.UUID, object]:
    """The first company registers the id and holds its transaction open while the second
    tries; returns (first, second, what the second got) once the first committed."""
    first, second = uuid.uuid4(), uuid.uuid4()
    async with db.acquire() as one, db.acquire() as two:
        one_tx = one.transaction()
        await one_tx.start()
        await register(one, first)

        async def late() -> object:
            async with two.transaction():
                try:
                    return await register(two, second)
                except DomainError as error:
                    return error

        attempt = asyncio.create_task(late())
        await asyncio.sleep(0.3)
        assert not attempt.done(), "the second claim did not wait for the first"
        await one_tx.commit()
        return first, second, await asyncio.wait_for(attempt, 10)


async def test_the_pool_gives_a_contested_office_id_to_the_first_company(
    db: asyncpg.Pool,
) -> None:
    office_id = uuid.uuid4()

    async def register(conn: asyncpg.Connection, company: uuid.UUID) -> object:
        return await Offices(conn).put(Office(company, office_id, "USD", PlanKind.BUNDLE, False))

    first, second, got = await race(db, register)
    assert got is None
    rows = await db.fetch("SELECT company_id FROM pool.offices WHERE office_id = $1", office_id)
    assert [r["company_id"] for r in rows] == [first]
    async with db.acquire() as conn:
        assert await Offices(conn).owner(office_id) == first
        assert await Offices(conn).get(second, office_id) is None


async def test_credits_gives_a_contested_office_id_to_the_first_company(
    db: asyncpg.Pool,
) -> None:
    office_id = uuid.uuid4()

    async def register(conn: asyncpg.Connection, company: uuid.UUID) -> object:
        account = OfficeAccount(company, office_id, "USD", False, 0, NOW, OveragePolicy.ALLOW)
        return await OfficeRepository(conn).put(account, NOW)

    first, _, got = await race(db, register)
    assert isinstance(got, DomainError)
    assert got.reason == "OFFICE_NOT_FOUND"
    rows = await db.fetch("SELECT company_id FROM credits.offices WHERE office_id = $1", office_id)
    assert [r["company_id"] for r in rows] == [first]
