"""One request_id sent at the same time for a grant and for a usage of the same company:
the two transactions may wait for each other (the grant holds its claim of the request_id
and waits for the (company, currency) lock; the usage batch holds the lock and waits to
record the same request_id). PostgreSQL breaks the cycle by rolling one back: that one
is answered ABORTED (retry with the same request_id), never INTERNAL, and at most one of
the two takes effect."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import pytest

from licensing.credits.v1 import credits_pb2 as pb
from tests.support.credits import CreditsCompany, reason_of

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('credits/' || $1::text, 0))"
WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()
"""


async def _until_waiting(db: asyncpg.Pool, count: int) -> None:
    """Asked outside the lock holder's transaction (its view of the activity is fixed
    for the transaction)."""
    for _ in range(500):
        if await db.fetchval(WAITING) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} transactions waited for the lock")


async def _outcome(call: asyncio.Task[object]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), reason_of(error)
    return grpc.StatusCode.OK, ""


async def test_a_grant_and_a_usage_racing_on_one_request_id(
    company: CreditsCompany, db: asyncpg.Pool
) -> None:
    await company.office("a")
    request_id = str(uuid.uuid4())
    async with db.acquire() as holder:
        lock = holder.transaction()
        await lock.start()
        await holder.execute(LOCK, f"{company.company_id}/USD")
        usage = asyncio.create_task(company.use("a", 5, request_id=request_id))
        await _until_waiting(db, 1)
        grant = asyncio.create_task(
            company.grant(pb.GRANT_TARGET_COMPANY_POOL, 7, currency="USD", request_id=request_id)
        )
        # The grant claims the request_id, then waits for the lock behind the usage.
        await _until_waiting(db, 2)
        await lock.commit()
    outcomes = [await _outcome(usage), await _outcome(grant)]  # type: ignore[arg-type]
    assert all(code is not grpc.StatusCode.INTERNAL for code, _ in outcomes), outcomes
    assert {code for code, _ in outcomes} <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }, outcomes
    assert sum(code is grpc.StatusCode.OK for code, _ in outcomes) <= 1
    recorded, pool = len(await company.usage()), await company.pool_balance()
    assert (recorded, pool) in {(0, 0), (1, 0), (0, 7)}
    assert (await company.check()).consistent
