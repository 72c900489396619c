"""Purchases across real service processes: a pool outage, a billing crash between the
hold and the commit, duplicate request_ids. Nothing is charged twice, no unit is lost or
left held."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import grpc
import pytest

from licensing.billing.v1 import billing_pb2 as bpb
from licensing.billing.v1 import billing_pb2_grpc
from licensing.pool.v1 import pool_pb2_grpc
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
    pool_channel = grpc.aio.insecure_channel(pool.address)
    billing_channel = grpc.aio.insecure_channel(billing.address)
    try:
        yield Shop(
            billing_pb2_grpc.BillingServiceStub(billing_channel),
            pool_pb2_grpc.PoolServiceStub(pool_channel),
        )
    finally:
        await pool_channel.close()
        await billing_channel.close()


def rebind(shop: Shop, billing: ServiceProcess) -> grpc.aio.Channel:
    channel = grpc.aio.insecure_channel(billing.address)
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
