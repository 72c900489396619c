"""Checkout through real gRPC: restore first, then the pool ("X from pool"), then new."""

from datetime import UTC, datetime

import grpc
import pytest

from libs.common.clock import FakeClock
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.pool.v1 import pool_pb2 as ppb
from tests.support.billing import Shop
from tests.support.pool import details_of, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
# The fake clock starts at 2026-01-15 12:00 UTC; a plan starting Jan 1 is in the cycle
# [Jan 1, Feb 1): 31 days = 2,678,400 s, of which 16.5 days = 1,425,600 s are left.


async def test_checkout_order_and_from_pool(shop: Shop, clock: FakeClock) -> None:
    await shop.plan("a", "USD", {"connect": 1000, "agentic_ai": 5000}, JAN_1, primary=True)
    await shop.plan("b", "USD", {"connect": 1000, "agentic_ai": 5000}, JAN_1)
    await shop.plan("c", "EUR", {"connect": 900}, JAN_1)
    await shop.add("b", "connect", 3)  # spare: claimable at once when the pool is enabled
    await shop.add("c", "connect", 2)  # another currency: never offered to a USD office
    await shop.add("b", "agentic_ai", 1)  # not poolable: stays spare in b
    await shop.enable("USD")
    # a returns one of its own: in grace, but a may take it back.
    await shop.add("a", "connect", 1)
    await shop.give_back(await shop.acquire("a", "connect"))
    # b takes one from the pool and returns it: in grace for 30 minutes, not for a.
    await shop.give_back(await shop.acquire("b", "connect"))
    # another hold holds one pooled unit.
    await shop.pool.Reserve(
        ppb.ReserveRequest(
            request_id=rid(),
            company_id=shop.company_id,
            office_id=shop.offices["b"],
            license_type="connect",
            quantity=1,
            sources=[ppb.ALLOCATION_SOURCE_POOL],
        )
    )
    await shop.add("a", "connect", 2)
    assert len(await shop.remove("a", "connect", 2)) == 2

    quote = await shop.quote("a", "connect", 6)
    assert (quote.restored, quote.from_pool, quote.new_units) == (2, 2, 2)
    assert quote.own_returns == 1  # a's own return in grace; the other is b's spare pooled
    assert quote.message == "2 from pool, 2 restored, 2 new"
    # 2 x $10.00 x 1,425,600 / 2,678,400 = 1064.516... cents -> 1065
    assert quote.amount == bpb.Money(currency_code="USD", amount_minor=1065)
    assert quote.unit_price.amount_minor == 1000
    assert quote.quote_id == ""

    purchase = await shop.buy("a", "connect", 6)
    assert purchase.state == bpb.PURCHASE_STATE_COMPLETED
    assert (purchase.restored, purchase.from_pool, purchase.new_units) == (2, 2, 2)
    assert purchase.amount.amount_minor == 1065
    assert purchase.message == "2 from pool, 2 restored, 2 new"
    assert len(purchase.unit_ids) == 6
    assert await shop.states("a", "connect") == {"SPARE": 6}
    # b's unit in grace and the unit held by another hold were passed over.
    assert await shop.states("b", "connect") == {"POOLED": 1, "HELD": 1}
    (in_grace,) = await shop.units(office_id=shop.offices["b"], state=ppb.UNIT_STATE_POOLED)
    assert in_grace.claimable_at.ToDatetime(tzinfo=UTC) > clock.now()
    assert await shop.states("c", "connect") == {"SPARE": 2}

    ai = await shop.quote("a", "agentic_ai", 1)
    assert (ai.restored, ai.from_pool, ai.new_units) == (0, 0, 1)
    assert ai.message == "0 from pool, 1 new"


async def test_unpooled_currency_never_takes_from_other_offices(shop: Shop) -> None:
    await shop.plan("a", "JPY", {"connect": 3000}, JAN_1)
    await shop.plan("b", "JPY", {"connect": 3000}, JAN_1)
    await shop.add("b", "connect", 5)
    purchase = await shop.buy("a", "connect", 2)
    assert (purchase.from_pool, purchase.new_units) == (0, 2)
    # 2 x 3000 yen x 1,425,600 / 2,678,400 = 3193.548... -> 3194 yen
    assert purchase.amount == bpb.Money(currency_code="JPY", amount_minor=3194)


async def test_restores_never_charge(shop: Shop) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.add("a", "connect", 3)
    await shop.remove("a", "connect", 3)
    purchase = await shop.buy("a", "connect", 2)
    assert (purchase.restored, purchase.from_pool, purchase.new_units) == (2, 0, 0)
    assert purchase.amount.amount_minor == 0
    assert await shop.states("a", "connect") == {"SPARE": 2, "REMOVAL_SCHEDULED": 1}


async def test_contracted_plans_cannot_schedule_removals(shop: Shop) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1, contracted=True)
    await shop.add("a", "connect", 2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.remove("a", "connect", 1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "CONTRACTED_PLAN"
    assert "account team" in (caught.value.details() or "")
    assert await shop.states("a", "connect") == {"SPARE": 2}


async def test_removal_needs_spare_units(shop: Shop) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.add("a", "connect", 2)
    await shop.acquire("a", "connect", 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.remove("a", "connect", 2)
    assert reason_of(caught.value) == "NOT_ENOUGH_SPARE"


async def test_pricing_mismatch_only_in_a_pooled_currency(shop: Shop) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.plan("b", "USD", {"connect": 1200}, JAN_1)
    await shop.plan("c", "CAD", {"connect": 1000}, JAN_1)
    await shop.plan("d", "CAD", {"connect": 1100}, JAN_1)
    await shop.enable("USD")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.buy("a", "connect", 1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "PRICING_MISMATCH"
    (detail,) = details_of(caught.value, bpb.PricingMismatchDetail)
    assert detail.currency == "USD"
    (mismatch,) = detail.mismatches
    assert mismatch.license_type == "connect"
    assert {(p.plan_id, p.unit_price.amount_minor) for p in mismatch.plan_prices} == {
        (shop.plans["a"], 1000),
        (shop.plans["b"], 1200),
    }
    assert await shop.purchases() == []  # nothing written, nothing charged

    parity = await shop.billing.CheckPricingParity(
        bpb.CheckPricingParityRequest(company_id=shop.company_id, currency="CAD")
    )
    assert not parity.in_parity
    assert not parity.pool_enabled
    bought = await shop.buy("c", "connect", 1)  # CAD is not pooled: no error
    assert bought.state == bpb.PURCHASE_STATE_COMPLETED

    await shop.update_prices("b", "USD", {"connect": 1000})
    assert (await shop.buy("a", "connect", 1)).new_units == 1
