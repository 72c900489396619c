"""A service with a read replica (`<SVC>_READ_DATABASE_URL`): a streaming standby of the
test's own PostgreSQL server, made with pg_basebackup. With the standby's replay paused,
the history reads (ListUsage, GetUsageTotals, ListLedgerEntries) show the standby's stale
state, so they are served by it; the calls that decide (RecordUsage's balance check, its
idempotency, GetBalances, GetUsage of one's own record) see the primary's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from tests.support.credits import CreditsCompany, reason_of, running_credits
from tests.support.database import migrated_database, with_database
from tests.support.private_postgres import (
    PrivatePostgres,
    private_postgres,
    streaming_replica,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(loop_scope="session")
async def primary() -> AsyncIterator[PrivatePostgres]:
    async with private_postgres() as server:
        yield server


async def caught_up(primary_url: str, replica_url: str) -> None:
    """Waits until the replica has replayed everything the primary has written so far."""
    primary = await asyncpg.connect(primary_url)
    replica = await asyncpg.connect(replica_url)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        for _ in range(300):
            if await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the replica did not catch up within 30 s")
    finally:
        await primary.close()
        await replica.close()


async def test_history_reads_go_to_the_replica_and_decisions_stay_on_the_primary(
    primary: PrivatePostgres,
) -> None:
    async with (
        migrated_database(primary.url) as database_url,
        streaming_replica(primary) as standby,
    ):
        read_url = with_database(standby.url, database_url.rsplit("/", 1)[1])
        async with running_credits(database_url, FakeClock(), read_database_url=read_url) as (
            _,
            stub,
        ):
            company = CreditsCompany(stub)
            await company.office("hq", allowance=0, policy=pb.OVERAGE_POLICY_REJECT)
            await company.pooling("USD")
            await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 100, currency="USD")
            first = await company.use("hq", 40)
            await caught_up(database_url, read_url)
            assert [u.usage_id for u in await company.usage()] == [first.usage_id]

            replica = await asyncpg.connect(read_url)
            try:
                await replica.execute("SELECT pg_wal_replay_pause()")
                # Decisions: the primary's balance (60 left), not the standby's.
                request = company.usage_request("hq", 60)
                second = (await stub.RecordUsage(request)).usage
                again = (await stub.RecordUsage(request)).usage  # the same request_id
                assert again.usage_id == second.usage_id
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await company.use("hq", 1)
                assert reason_of(refused.value) == "INSUFFICIENT_CREDITS"
                assert await company.pool_balance() == 0
                found = await stub.GetUsage(
                    pb.GetUsageRequest(company_id=company.company_id, usage_id=second.usage_id)
                )
                assert found.usage.usage_id == second.usage_id

                # History: the standby's, which has not replayed the second usage yet.
                assert [u.usage_id for u in await company.usage()] == [first.usage_id]
                totals = await stub.GetUsageTotals(
                    pb.GetUsageTotalsRequest(company_id=company.company_id)
                )
                assert [t.amount_minor for t in totals.company_totals] == [40]
                entries = await company.entries()
                assert second.usage_id not in {e.usage_id for e in entries}
            finally:
                await replica.execute("SELECT pg_wal_replay_resume()")
                await replica.close()

            await caught_up(database_url, read_url)
            listed = {u.usage_id for u in await company.usage()}
            assert listed == {first.usage_id, second.usage_id}
