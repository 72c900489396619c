"""Purchase leases: one driver per purchase. A heartbeat keeps a long drive's lease; a
drive whose renewals stop ends before its lease does; a retry waits for another driver
only within its deadline, and takes the purchase over once that driver's lease ends."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest

from libs.common.clock import FakeClock
from libs.common.idempotency import key_for
from licensing.billing.v1 import billing_pb2 as bpb
from services.billing.api.convert import SERVICE_NAME
from services.billing.domain import cycles
from services.billing.domain.model import Purchase, PurchaseState
from services.billing.leases import LeaseKeeper, LeaseLost
from services.billing.repository import BillingRepository
from services.billing.repository.purchases import PurchaseKey
from tests.support.billing import Shop
from tests.support.pool import reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
REPO = BillingRepository()


async def purchase_request(shop: Shop) -> bpb.PurchaseLicensesRequest:
    """A purchase for office a, which gets a plan."""
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    return bpb.PurchaseLicensesRequest(
        request_id=rid(),
        company_id=shop.company_id,
        office_id=shop.offices["a"],
        license_type="connect",
        quantity=2,
    )


async def leased_purchase(
    shop: Shop,
    db: asyncpg.Pool,
    clock: FakeClock,
    request: bpb.PurchaseLicensesRequest,
    owner: uuid.UUID,
    lease_seconds: float,
) -> PurchaseKey:
    """The (company, id) of the PENDING purchase `request` started, as its driver
    (`owner`) wrote it before its first pool call."""
    company_id = uuid.UUID(shop.company_id)
    purchase = Purchase(
        purchase_id=uuid.uuid4(),
        company_id=company_id,
        request_id=request.request_id,
        office_id=uuid.UUID(request.office_id),
        license_type=request.license_type,
        quantity=request.quantity,
        state=PurchaseState.PENDING,
        plan_id=uuid.UUID(shop.plans["a"]),
        currency="USD",
        unit_price=1000,
        cycle=cycles.cycle_at(JAN_1, clock.now()),
        purchased_at=clock.now(),
        attempt=1,
        step="CREATED",
    )
    key = key_for(f"/{SERVICE_NAME}/PurchaseLicenses", company_id, request)
    async with db.acquire() as conn:
        assert await REPO.insert_purchase(conn, purchase, key.fingerprint, owner, lease_seconds)
    return (company_id, purchase.purchase_id)


async def taken_over(db: asyncpg.Pool, purchase: PurchaseKey) -> bool:
    """Whether another driver could take the purchase's lease now."""
    async with db.acquire() as conn:
        return await REPO.take_lease(conn, *purchase, uuid.uuid4(), 60)


async def test_a_heartbeat_keeps_a_long_drive_its_lease(
    shop: Shop, db: asyncpg.Pool, clock: FakeClock
) -> None:
    request = await purchase_request(shop)
    keeper = LeaseKeeper(db, REPO, seconds=1.5)
    heartbeat = asyncio.create_task(keeper.run())
    lease = keeper.new()
    purchase = await leased_purchase(shop, db, clock, request, lease.token, keeper.seconds)
    takeovers = []
    try:
        async with keeper.held(purchase, lease):
            for _ in range(30):  # three lease periods
                takeovers.append(await taken_over(db, purchase))
                await asyncio.sleep(0.15)
    finally:
        heartbeat.cancel()
    assert takeovers
    assert not any(takeovers)
    async with db.acquire() as conn:
        await REPO.drop_lease(conn, *purchase, lease.token)
    assert await taken_over(db, purchase)


async def test_a_drive_whose_renewals_stop_ends_before_its_lease(
    shop: Shop, db: asyncpg.Pool, clock: FakeClock
) -> None:
    request = await purchase_request(shop)
    keeper = LeaseKeeper(db, REPO, seconds=2.0)  # its heartbeat never runs
    lease = keeper.new()
    purchase = await leased_purchase(shop, db, clock, request, lease.token, keeper.seconds)
    takeovers = []

    async def drive() -> None:
        async with keeper.held(purchase, lease):
            while True:
                takeovers.append(await taken_over(db, purchase))
                await asyncio.sleep(0.05)

    with pytest.raises(LeaseLost):
        await drive()
    # No one could take the purchase over while the drive went on.
    assert takeovers
    assert not any(takeovers)
    # The lease then ends and another driver takes it; the first cannot drop it.
    for _ in range(100):
        if await taken_over(db, purchase):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the lease never ended")
    async with db.acquire() as conn:
        await REPO.drop_lease(conn, *purchase, lease.token)
    assert not await taken_over(db, purchase)


async def test_a_retry_takes_over_once_the_other_driver_s_lease_ends(
    shop: Shop, db: asyncpg.Pool, clock: FakeClock
) -> None:
    request = await purchase_request(shop)
    # The driver that wrote it died: its lease runs out shortly, nobody renews it.
    await leased_purchase(shop, db, clock, request, uuid.uuid4(), 1.5)
    response = await shop.billing.PurchaseLicenses(request, timeout=10)
    purchase = response.purchase
    assert purchase.state == bpb.PURCHASE_STATE_COMPLETED
    assert (purchase.restored, purchase.from_pool, purchase.new_units) == (0, 0, 2)
    assert purchase.amount.amount_minor > 0
    assert await shop.states("a", "connect") == {"SPARE": 2}
    assert [p.purchase_id for p in await shop.purchases()] == [purchase.purchase_id]


async def test_a_retry_waits_for_a_live_driver_only_within_its_deadline(
    shop: Shop, db: asyncpg.Pool, clock: FakeClock
) -> None:
    request = await purchase_request(shop)
    owner = uuid.uuid4()
    purchase = await leased_purchase(shop, db, clock, request, owner, 60)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.billing.PurchaseLicenses(request, timeout=1.5)
    # Answered before the deadline, and the other driver's purchase left alone.
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert reason_of(caught.value) == "PURCHASE_IN_PROGRESS"
    row = await db.fetchrow(
        "SELECT state, step, lease_owner FROM billing.purchases"
        " WHERE company_id = $1 AND purchase_id = $2",
        *purchase,
    )
    assert dict(row) == {"state": "PENDING", "step": "CREATED", "lease_owner": owner}
    assert await shop.states("a", "connect") == {}
