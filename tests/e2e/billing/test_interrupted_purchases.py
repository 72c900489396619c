"""Purchases across real service processes: a pool outage, a billing crash between the
hold and the commit, a crash in the middle of several purchases, duplicate request_ids.
Nothing is charged twice, no unit is lost or left held."""

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest

from licensing.billing.v1 import billing_pb2 as bpb
from licensing.billing.v1 import billing_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from services.billing.app import session_name
from tests.support import tls
from tests.support.billing import Shop
from tests.support.pool import reason_of, rid
from tests.support.processes import ServiceProcess, spawn, spawned

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

START = datetime(2026, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pool_env(database_url: str, port: int) -> dict[str, str]:
    return {
        "POOL_DATABASE_URL": database_url,
        "POOL_PORT": str(port),
        "POOL_LOG_LEVEL": "WARNING",
    }


def billing_env(database_url: str, pool_port: int, **extra: str) -> dict[str, str]:
    return {
        "BILLING_DATABASE_URL": database_url,
        "BILLING_PORT": "0",
        "BILLING_LOG_LEVEL": "WARNING",
        "POOL_ADDRESS": f"127.0.0.1:{pool_port}",
        "BILLING_POOL_ATTEMPTS": "2",
        "BILLING_PURCHASE_LEASE_SECONDS": "2",
        "BILLING_RECOVERY_INTERVAL_SECONDS": "3600",
        **{f"BILLING_{k.upper()}": v for k, v in extra.items()},
    }


@asynccontextmanager
async def shop_on(
    stack: AsyncExitStack, pool: ServiceProcess, billing: ServiceProcess
) -> AsyncIterator[Shop]:
    pool_channel = tls.channel(pool.address)
    billing_channel = tls.channel(billing.address)
    try:
        yield Shop(
            billing_pb2_grpc.BillingServiceStub(billing_channel),
            pool_pb2_grpc.PoolServiceStub(pool_channel),
        )
    finally:
        await pool_channel.close()
        await billing_channel.close()


def rebind(shop: Shop, billing: ServiceProcess) -> grpc.aio.Channel:
    channel = tls.channel(billing.address)
    shop.billing = billing_pb2_grpc.BillingServiceStub(channel)
    return channel


async def retry_while_unavailable(shop: Shop, request_id: str) -> bpb.Purchase:
    """What a client does with UNAVAILABLE: retry later with the same request_id."""
    for _ in range(50):
        try:
            return await shop.buy("a", "connect", 2, request_id=request_id)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("the pool never came back")


async def pooled_shop(shop: Shop) -> None:
    """a buys connect; b has 2 spare units that enter the USD pool."""
    await shop.plan("a", "USD", {"connect": 1000}, START)
    await shop.plan("b", "USD", {"connect": 1000}, START)
    await shop.add("b", "connect", 2)
    await shop.enable("USD")


async def test_pool_down_charges_nothing_and_a_retry_charges_once(database_url: str) -> None:
    port = free_port()
    async with AsyncExitStack() as stack:
        pool = await spawn("pool", pool_env(database_url, port))
        billing = await stack.enter_async_context(
            spawned("billing", billing_env(database_url, port))
        )
        shop = await stack.enter_async_context(shop_on(stack, pool, billing))
        await shop.plan("a", "USD", {"connect": 1000}, START)
        await pool.stop()

        request_id = rid()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await shop.buy("a", "connect", 2, request_id=request_id)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert [p for p in await shop.purchases() if p.state == bpb.PURCHASE_STATE_COMPLETED] == []

        pool = await spawn("pool", pool_env(database_url, port))
        stack.push_async_callback(pool.stop)
        first = await retry_while_unavailable(shop, request_id)
        again = await shop.buy("a", "connect", 2, request_id=request_id)
        assert first == again
        assert first.new_units == 2
        assert len(await shop.purchases()) == 1
        assert await shop.states("a", "connect") == {"SPARE": 2}


async def test_billing_killed_between_hold_and_commit_then_retried(database_url: str) -> None:
    port = free_port()
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(spawned("pool", pool_env(database_url, port)))
        crashing = await spawn(
            "billing", billing_env(database_url, port, crash_after_step="reserve")
        )
        shop = await stack.enter_async_context(shop_on(stack, pool, crashing))
        await pooled_shop(shop)
        request_id = rid()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await shop.buy("a", "connect", 3, request_id=request_id)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await crashing.process.wait() == 70
        assert await shop.states("b", "connect") == {"HELD": 2}  # the hold outlived billing

        billing = await stack.enter_async_context(
            spawned("billing", billing_env(database_url, port))
        )
        stack.push_async_callback(rebind(shop, billing).close)
        purchase = await shop.buy("a", "connect", 3, request_id=request_id)
        assert (purchase.from_pool, purchase.new_units) == (2, 1)
        # 1 x 1000 cents, prorated: charged once, for the one new unit only.
        assert purchase.amount.amount_minor > 0
        assert purchase.amount.amount_minor < 1000
        assert len(await shop.purchases()) == 1
        assert await shop.states("a", "connect") == {"SPARE": 3}
        assert await shop.states("b", "connect") == {}


async def test_billing_killed_between_hold_and_commit_then_recovered(database_url: str) -> None:
    port = free_port()
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(spawned("pool", pool_env(database_url, port)))
        crashing = await spawn(
            "billing", billing_env(database_url, port, crash_after_step="reserve")
        )
        shop = await stack.enter_async_context(shop_on(stack, pool, crashing))
        await pooled_shop(shop)
        request_id = rid()
        with pytest.raises(grpc.aio.AioRpcError):
            await shop.buy("a", "connect", 3, request_id=request_id)
        await crashing.process.wait()

        recovering = await stack.enter_async_context(
            spawned("billing", billing_env(database_url, port, recovery_interval_seconds="0.5"))
        )
        stack.push_async_callback(rebind(shop, recovering).close)
        for _ in range(100):
            (purchase,) = await shop.purchases()
            if purchase.state != bpb.PURCHASE_STATE_PENDING:
                break
            await asyncio.sleep(0.1)
        # Undone: the hold released, nothing charged, the pool units back in the pool.
        assert purchase.state == bpb.PURCHASE_STATE_FAILED
        assert purchase.failure_reason == "PURCHASE_INTERRUPTED"
        assert purchase.amount.amount_minor == 0
        assert await shop.states("b", "connect") == {"POOLED": 2}
        assert await shop.states("a", "connect") == {}

        # The caller retries with the same request_id: a fresh attempt, charged once.
        retried = await shop.buy("a", "connect", 3, request_id=request_id)
        assert retried.state == bpb.PURCHASE_STATE_COMPLETED
        assert (retried.from_pool, retried.new_units) == (2, 1)
        assert len(await shop.purchases()) == 1
        assert await shop.states("a", "connect") == {"SPARE": 3}


async def test_duplicate_request_ids_at_once_charge_once(database_url: str) -> None:
    port = free_port()
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(spawned("pool", pool_env(database_url, port)))
        billings = [
            await stack.enter_async_context(spawned("billing", billing_env(database_url, port)))
            for _ in range(2)
        ]
        shop = await stack.enter_async_context(shop_on(stack, pool, billings[0]))
        await pooled_shop(shop)
        other = Shop(shop.billing, shop.pool, shop.company_id, shop.offices, shop.plans)
        stack.push_async_callback(rebind(other, billings[1]).close)
        request_id = rid()
        results = await asyncio.gather(
            *(s.buy("a", "connect", 4, request_id=request_id) for s in [shop, other] * 4),
            return_exceptions=True,
        )
        done = [r for r in results if isinstance(r, bpb.Purchase)]
        errors = [r for r in results if not isinstance(r, bpb.Purchase)]
        assert all(
            isinstance(e, grpc.aio.AioRpcError) and reason_of(e) == "PURCHASE_IN_PROGRESS"
            for e in errors
        ), errors
        assert done
        assert all(r == done[0] for r in done)
        assert len(await shop.purchases()) == 1
        assert await shop.states("a", "connect") == {"SPARE": 4}


# --- a crash in the middle of several purchases -------------------------------------------

BUYERS = [f"buyer-{n}" for n in range(6)]
QUANTITY = 3
POOL_SIZE = 10
# The bound: an interrupted purchase is settled, and retries of it answered,
# this long after billing comes back (with the production lease and recovery settings).
RECOVERY_BOUND_SECONDS = 10.0
CALL_DEADLINE_SECONDS = 30.0


@dataclass
class Crashed:
    """What a crash amid several purchases left: the shop, the pool's port, each buyer's
    request_id, and the step and hold of each purchase it interrupted (by request_id)."""

    shop: Shop
    pool_port: int
    request_ids: dict[str, str]
    interrupted: dict[str, tuple[str, uuid.UUID | None]]

    def buyer_of(self, purchase: bpb.Purchase) -> str:
        return next(b for b in BUYERS if self.shop.offices[b] == purchase.office_id)


def billing_env_as_deployed(database_url: str, pool_port: int, **extra: str) -> dict[str, str]:
    """billing_env without the tests' lease and recovery settings: the defaults apply."""
    env = billing_env(database_url, pool_port, **extra)
    del env["BILLING_PURCHASE_LEASE_SECONDS"], env["BILLING_RECOVERY_INTERVAL_SECONDS"]
    return env


async def buy_within(shop: Shop, office: str, request_id: str) -> bpb.Purchase:
    """A buyer's purchase, with a deadline well past the bound (the bound is checked on
    when the answer came)."""
    response = await shop.billing.PurchaseLicenses(
        bpb.PurchaseLicensesRequest(
            request_id=request_id,
            company_id=shop.company_id,
            office_id=shop.offices[office],
            license_type="connect",
            quantity=QUANTITY,
        ),
        timeout=CALL_DEADLINE_SECONDS,
    )
    purchase: bpb.Purchase = response.purchase
    return purchase


async def pending(db: asyncpg.Pool, shop: Shop) -> dict[str, tuple[str, uuid.UUID | None]]:
    """request_id -> (step, hold_id) of the company's PENDING purchases, from the database."""
    rows = await db.fetch(
        "SELECT request_id, step, hold_id FROM billing.purchases"
        " WHERE company_id = $1 AND state = 'PENDING'",
        uuid.UUID(shop.company_id),
    )
    return {r["request_id"]: (r["step"], r["hold_id"]) for r in rows}


async def sessions_of(db: asyncpg.Pool, process: ServiceProcess) -> int:
    """How many database sessions the (billing) process has open."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        session_name(process.process.pid),
    )
    return count


async def sessions_ended(db: asyncpg.Pool, process: ServiceProcess) -> None:
    """Waits until the database has ended the sessions of a process that died. A statement
    it sent before dying still runs (and commits) after its exit: until its sessions end,
    the records may not yet say how far it got."""
    for _ in range(200):
        if not await sessions_of(db, process):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sessions of {process.name} outlived it")


async def hold_committed(shop: Shop, hold_id: uuid.UUID | None) -> bool:
    if hold_id is None:
        return False
    found = await shop.pool.GetHold(
        ppb.GetHoldRequest(company_id=shop.company_id, hold_id=str(hold_id))
    )
    return found.hold.state == ppb.HOLD_STATE_COMMITTED


async def crash_amid_purchases(
    stack: AsyncExitStack, database_url: str, db: asyncpg.Pool
) -> Crashed:
    """Six offices buy at once from a pool of 10 units; billing crashes right after the
    first commit (past the pivot), the other purchases wherever they were."""
    port = free_port()
    pool = await stack.enter_async_context(spawned("pool", pool_env(database_url, port)))
    crashing = await spawn(
        "billing", billing_env_as_deployed(database_url, port, crash_after_step="commit")
    )
    shop = await stack.enter_async_context(shop_on(stack, pool, crashing))
    await shop.plan("seller", "USD", {"connect": 1000}, START)
    for buyer in BUYERS:
        await shop.plan(buyer, "USD", {"connect": 1000}, START)
    await shop.add("seller", "connect", POOL_SIZE)
    await shop.enable("USD")
    assert await sessions_of(db, crashing)  # the wait for them below means something
    request_ids = {buyer: rid() for buyer in BUYERS}
    outcomes = await asyncio.gather(
        *(buy_within(shop, b, request_ids[b]) for b in BUYERS), return_exceptions=True
    )
    assert all(
        isinstance(o, bpb.Purchase)
        or (isinstance(o, grpc.aio.AioRpcError) and o.code() == grpc.StatusCode.UNAVAILABLE)
        for o in outcomes
    ), outcomes
    assert await crashing.process.wait() == 70
    # The steps as billing left them: a step it was recording as it died (say ADDING,
    # the pivot of a purchase without a hold) lands after its exit.
    await sessions_ended(db, crashing)
    interrupted = await pending(db, shop)
    # Several purchases were cut off, the one that crashed billing right after its commit
    # (past the pivot) among them.
    assert len(interrupted) >= 2, interrupted
    assert "COMMITTING" in {step for step, _ in interrupted.values()}, interrupted
    return Crashed(shop, port, request_ids, interrupted)


def steps_of(crashed: Crashed) -> list[str]:
    return sorted(step for step, _ in crashed.interrupted.values())


async def restarted(stack: AsyncExitStack, database_url: str, crashed: Crashed) -> float:
    """Billing back (as deployed); returns the monotonic time it listened at."""
    billing = await stack.enter_async_context(
        spawned("billing", billing_env_as_deployed(database_url, crashed.pool_port))
    )
    back = time.monotonic()
    stack.push_async_callback(rebind(crashed.shop, billing).close)
    return back


async def assert_settled_once(crashed: Crashed, purchases: list[bpb.Purchase]) -> None:
    """One purchase per request, each charged for its new units only; every unit where
    the outcomes put it, none held."""
    shop = crashed.shop
    assert len(await shop.purchases()) == len(purchases)
    completed = [p for p in purchases if p.state == bpb.PURCHASE_STATE_COMPLETED]
    for purchase in purchases:
        office = crashed.buyer_of(purchase)
        if purchase.state == bpb.PURCHASE_STATE_COMPLETED:
            assert purchase.from_pool + purchase.new_units == QUANTITY
            assert (purchase.amount.amount_minor > 0) == (purchase.new_units > 0)
            assert await shop.states(office, "connect") == {"SPARE": QUANTITY}
        else:
            assert purchase.state == bpb.PURCHASE_STATE_FAILED
            assert purchase.amount.amount_minor == 0
            assert await shop.states(office, "connect") == {}
    left = POOL_SIZE - sum(p.from_pool for p in completed)
    assert await shop.states("seller", "connect") == ({"POOLED": left} if left else {})
    states = await shop.states()
    assert "HELD" not in states
    # New units exist once per completed purchase (AddUnits never ran twice).
    assert sum(states.values()) == POOL_SIZE + sum(p.new_units for p in completed)


async def test_crash_amid_purchases_retries_answered_within_bound(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with AsyncExitStack() as stack:
        crashed = await crash_amid_purchases(stack, database_url, db)
        back = await restarted(stack, database_url, crashed)

        async def retry(buyer: str) -> tuple[bpb.Purchase, float]:
            purchase = await buy_within(crashed.shop, buyer, crashed.request_ids[buyer])
            return purchase, time.monotonic() - back

        answers = await asyncio.gather(*(retry(b) for b in BUYERS))
        slowest = max(elapsed for _, elapsed in answers)
        print(f"interrupted {steps_of(crashed)}; answered in {slowest:.2f} s")
        assert slowest < RECOVERY_BOUND_SECONDS
        # Every retry carried its purchase to the end (an undone attempt runs again).
        purchases = [p for p, _ in answers]
        assert len({p.purchase_id for p in purchases}) == len(BUYERS)
        assert all(p.state == bpb.PURCHASE_STATE_COMPLETED for p in purchases), purchases
        await assert_settled_once(crashed, purchases)
        again = [await buy_within(crashed.shop, b, crashed.request_ids[b]) for b in BUYERS]
        assert again == purchases


async def test_crash_amid_purchases_recovered_within_bound(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with AsyncExitStack() as stack:
        crashed = await crash_amid_purchases(stack, database_url, db)
        back = await restarted(stack, database_url, crashed)
        # Nobody retries: the recovery settles every interrupted purchase by itself.
        for _ in range(600):
            if not await pending(db, crashed.shop):
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - back
        print(f"interrupted {steps_of(crashed)}; settled in {elapsed:.2f} s")
        assert await pending(db, crashed.shop) == {}
        assert elapsed < RECOVERY_BOUND_SECONDS
        settled = await crashed.shop.purchases()  # those written before the crash
        await assert_settled_once(crashed, settled)
        for purchase in settled:
            request_id = crashed.request_ids[crashed.buyer_of(purchase)]
            if request_id not in crashed.interrupted:
                continue
            step, hold_id = crashed.interrupted[request_id]
            # Past the pivot (new units to add, or the hold committed): completed. Before
            # it (the hold, if any, released): undone, nothing charged.
            if step == "ADDING" or await hold_committed(crashed.shop, hold_id):
                assert purchase.state == bpb.PURCHASE_STATE_COMPLETED
            else:
                assert purchase.state == bpb.PURCHASE_STATE_FAILED
                assert purchase.failure_reason == "PURCHASE_INTERRUPTED"
        # The retries get the final answers; an undone purchase runs again, once.
        retried = [await buy_within(crashed.shop, b, crashed.request_ids[b]) for b in BUYERS]
        assert all(p.state == bpb.PURCHASE_STATE_COMPLETED for p in retried), retried
        await assert_settled_once(crashed, retried)
