"""The services behind a real PgBouncer in transaction pooling mode (the Debian package,
installed when missing and we are root), with asyncpg's statement cache off as PgBouncer
before 1.21 needs: the races still hold, with fewer server connections than clients, and
provisioning's import lock still excludes a second runner, live snapshots leave no lock
behind; the demo story, all four services through PgBouncer, adds up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from libs.common import local_pgbouncer
from libs.common.clock import FakeClock
from libs.common.database import create_pool
from licensing.credits.v1 import credits_pb2_grpc
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc
from licensing_cli.demo import Story
from licensing_cli.demo_platform import SERVICE_NAMES, launched
from services.provisioning.repository import locks
from tests.support import tls
from tests.support.credits import (
    CreditsCompany,
    assert_exactly_the_affordable_usages_recorded,
    running_credits,
)
from tests.support.demo_story import GRACE_SECONDS, assert_the_story_adds_up, play_on
from tests.support.processes import spawned
from tests.support.races import (
    assert_two_replicas_never_hand_out_a_unit_twice,
    pool_with_claimable_units,
    race_acquire,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

# Server connections PgBouncer may open per database: fewer than the services' own
# pools (2 replicas x 10), so transactions of different clients share them.
SERVER_CONNECTIONS = 4


@pytest.fixture(scope="module")
def pgbouncer(db_server: str) -> Iterator[local_pgbouncer.PgBouncer]:
    if reason := local_pgbouncer.unavailable_reason():
        pytest.skip(f"no PgBouncer: {reason}")
    with local_pgbouncer.running(db_server, pool_size=SERVER_CONNECTIONS) as running:
        yield running


@pytest.fixture
def bounced_url(pgbouncer: local_pgbouncer.PgBouncer, database_url: str) -> str:
    """The test database, through PgBouncer."""
    return pgbouncer.url(database_url)


async def assert_went_through(
    pgbouncer: local_pgbouncer.PgBouncer, database_url: str, before: int
) -> None:
    """PgBouncer passed the calls' transactions on to the test database since it had
    counted `before` (the services coalesce concurrent calls: a few dozen transactions
    for hundreds of calls)."""
    await asyncio.sleep(local_pgbouncer.STATS_PERIOD_SECONDS * 1.5)  # counted by now
    assert pgbouncer.transactions(database_url) - before >= 20


async def test_pool_replicas_race_for_the_last_units_through_pgbouncer(
    pgbouncer: local_pgbouncer.PgBouncer, bounced_url: str, database_url: str, db: asyncpg.Pool
) -> None:
    before = pgbouncer.transactions(database_url)
    env = {
        "POOL_DATABASE_URL": bounced_url,
        "POOL_DATABASE_STATEMENT_CACHE_SIZE": "0",
        "POOL_PORT": "0",
        "POOL_LOG_LEVEL": "WARNING",
    }
    await assert_two_replicas_never_hand_out_a_unit_twice(env, db)
    await assert_went_through(pgbouncer, database_url, before)


async def test_live_snapshots_during_allocation_leave_no_lock_behind(
    bounced_url: str, database_url: str, db: asyncpg.Pool
) -> None:
    """A live snapshot waits for the writers of its pools and keeps new ones out while it
    takes its view. Behind transaction pooling those locks must be transaction locks: a
    session lock taken on one server connection and released on another stays behind,
    and every later writer of that pool waits on it for good."""
    units = 120
    env = {
        "POOL_DATABASE_URL": bounced_url,
        "POOL_DATABASE_STATEMENT_CACHE_SIZE": "0",
        "POOL_PORT": "0",
        "POOL_LOG_LEVEL": "WARNING",
    }
    async with spawned("pool", env) as service, tls.channel(service.address) as channel:
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        company = await pool_with_claimable_units(stub, units=units, offices=3)
        request = pool_pb2.GetSnapshotRequest(company_id=company.company_id)

        async def snapshots() -> list[int]:
            lives = []
            for _ in range(15):
                answer = await stub.GetSnapshot(request, timeout=30)
                lives.append(answer.live_units)
            return lives

        # More snapshots at once than PgBouncer has server connections, beside the writers.
        *lives, outcome = await asyncio.gather(
            *(snapshots() for _ in range(SERVER_CONNECTIONS * 2)),
            race_acquire([stub], company, units, deadline_seconds=30),
        )
        for counted in lives:  # every unit counted once, whatever moved meanwhile
            assert counted == [units] * len(counted)
        assert not outcome.failures
        assert len(set(outcome.unit_ids)) == units
        # Writers still get through after the snapshots: nothing was left locked.
        await stub.AddUnits(
            pool_pb2.AddUnitsRequest(
                request_id="after-snapshots",
                company_id=company.company_id,
                office_id=company.offices["o1"],
                license_type="connect",
                quantity=1,
            ),
            timeout=10,
        )
    left = await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert left == 0


@pytest_asyncio.fixture(loop_scope="session")
async def credits_replicas(
    bounced_url: str,
) -> AsyncIterator[list[credits_pb2_grpc.CreditsServiceStub]]:
    clock = FakeClock()
    async with (
        running_credits(bounced_url, clock, database_statement_cache_size=0) as (_, first),
        running_credits(bounced_url, clock, database_statement_cache_size=0) as (_, second),
    ):
        yield [first, second]


async def test_concurrent_credit_usage_through_pgbouncer(
    pgbouncer: local_pgbouncer.PgBouncer,
    credits_replicas: list[credits_pb2_grpc.CreditsServiceStub],
    database_url: str,
) -> None:
    before = pgbouncer.transactions(database_url)
    company = CreditsCompany(credits_replicas[0])
    await assert_exactly_the_affordable_usages_recorded(company, credits_replicas)
    await assert_went_through(pgbouncer, database_url, before)


async def test_the_import_lock_holds_across_pooled_server_connections(bounced_url: str) -> None:
    """One runner per import: while one holds the lock, no other client gets it, however
    PgBouncer hands out server connections; once released, the next one gets it."""
    pools = [await create_pool(bounced_url, 2, statement_cache_size=0) for _ in range(2)]
    try:
        async with locks.exclusive(pools[0], "import/1") as got:
            assert got
            # Other transactions go on meanwhile, on the few server connections there are.
            await asyncio.gather(*(pools[0].fetchval("SELECT 1") for _ in range(20)))
            for pool in pools:
                async with locks.exclusive(pool, "import/1") as again:
                    assert not again
        for pool in pools:
            async with locks.exclusive(pool, "import/1") as after:
                assert after
    finally:
        for pool in pools:
            await pool.close()


async def test_the_demo_story_through_pgbouncer(
    pgbouncer: local_pgbouncer.PgBouncer, bounced_url: str, database_url: str, tmp_path: Path
) -> None:
    """All four services (purchases, imports and their runner lock, credits, invoices)
    through PgBouncer; the launcher's migrations go direct (DATABASE_URL)."""
    env: dict[str, str] = {}
    for name in SERVICE_NAMES:
        env[f"{name.upper()}_DATABASE_URL"] = bounced_url
        env[f"{name.upper()}_DATABASE_STATEMENT_CACHE_SIZE"] = "0"
    before = pgbouncer.transactions(database_url)

    def play() -> tuple[Story, dict[str, Any]]:
        with launched(tmp_path, GRACE_SECONDS, database_url=database_url, extra_env=env) as p:
            return play_on(p, tmp_path)

    story, pool_counts = await asyncio.to_thread(play)
    assert_the_story_adds_up(story, pool_counts)
    await assert_went_through(pgbouncer, database_url, before)
