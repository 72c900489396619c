"""Held quotes, replays, and invoices with amounts worked out by hand."""

import uuid
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.clock import FakeClock
from licensing.billing.v1 import billing_pb2 as bpb
from tests.support.billing import Shop
from tests.support.pool import reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
DEC_1 = datetime(2025, 12, 1, tzinfo=UTC)


async def test_a_held_quote_is_purchased_exactly(shop: Shop) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.plan("b", "USD", {"connect": 1000}, JAN_1)
    await shop.add("b", "connect", 2)
    await shop.enable("USD")
    quote = await shop.quote("a", "connect", 5, hold=True)
    assert quote.quote_id
    assert (quote.from_pool, quote.new_units) == (2, 3)
    assert await shop.states("b", "connect") == {"HELD": 2}  # held for the quote
    # Someone else cannot take the held units.
    other = await shop.quote("b", "connect", 2)
    assert other.from_pool == 0

    purchase = await shop.buy("", "", 0, quote_id=quote.quote_id)
    assert (purchase.from_pool, purchase.new_units) == (quote.from_pool, quote.new_units)
    assert purchase.amount == quote.amount
    assert await shop.states("a", "connect") == {"SPARE": 5}

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.buy("", "", 0, quote_id=quote.quote_id)
    assert reason_of(caught.value) == "QUOTE_ALREADY_USED"


async def test_an_expired_quote_fails_cleanly(shop: Shop, clock: FakeClock) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.plan("b", "USD", {"connect": 1000}, JAN_1)
    await shop.add("b", "connect", 1)
    await shop.enable("USD")
    quote = await shop.quote("a", "connect", 2, hold=True)
    clock.advance(seconds=121)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.buy("", "", 0, quote_id=quote.quote_id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "QUOTE_EXPIRED"
    assert await shop.purchases() == []
    assert await shop.states("a", "connect") == {}


async def test_a_quote_whose_restores_vanished_changes(shop: Shop) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.add("a", "connect", 2)
    await shop.remove("a", "connect", 2)
    quote = await shop.quote("a", "connect", 2, hold=True)
    assert quote.restored == 2
    await shop.buy("a", "connect", 1)  # restores one of the two meanwhile
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.buy("", "", 0, quote_id=quote.quote_id)
    assert reason_of(caught.value) == "QUOTE_CHANGED"
    # Undone: the one restored by the failed purchase is scheduled for removal again.
    assert await shop.states("a", "connect") == {"SPARE": 1, "REMOVAL_SCHEDULED": 1}
    (failed,) = [p for p in await shop.purchases() if p.state == bpb.PURCHASE_STATE_FAILED]
    assert failed.amount.amount_minor == 0
    assert failed.failure_reason == "QUOTE_CHANGED"


async def test_a_replayed_purchase_is_charged_once(shop: Shop) -> None:
    await shop.plan("a", "EUR", {"connect": 2000}, JAN_1)
    request_id = rid()
    first = await shop.buy("a", "connect", 2, request_id=request_id)
    again = await shop.buy("a", "connect", 2, request_id=request_id)
    assert again == first
    assert len(await shop.purchases()) == 1
    assert await shop.states("a", "connect") == {"SPARE": 2}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.buy("a", "connect", 3, request_id=request_id)
    assert reason_of(caught.value) == "REQUEST_ID_REUSED"


async def test_invoice_by_hand(shop: Shop, clock: FakeClock) -> None:
    # Clock: 2026-01-15 12:00. a (oldest, Dec 1) and b (Jan 1) in USD, c in JPY.
    await shop.plan("a", "USD", {"connect": 1000, "fax": 300}, DEC_1, primary=True)
    await shop.plan("b", "USD", {"connect": 1000, "fax": 300}, JAN_1)
    await shop.plan("c", "JPY", {"connect": 3000}, JAN_1)
    await shop.add("a", "connect", 1)
    await shop.acquire("a", "connect", 1)  # a: 1 assigned
    await shop.add("b", "fax", 3)  # b: 3 spare fax, pooled on enabling
    await shop.enable("USD")
    # b buys 2 connect (new): cycle [Jan 1, Feb 1), 1,425,600 of 2,678,400 s left:
    # 2 x 1000 x 1425600 / 2678400 = 1064.516 -> 1065 cents.
    bought = await shop.buy("b", "connect", 2)
    assert bought.amount.amount_minor == 1065
    # c buys 1 connect in yen: 3000 x 1425600 / 2678400 = 1596.77 -> 1597 yen.
    assert (await shop.buy("c", "connect", 1)).amount.amount_minor == 1597
    await shop.remove("b", "connect", 1)  # b: 1 spare + 1 scheduled
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await shop.close("2026-01")
    assert reason_of(early.value) == "PERIOD_NOT_ENDED"  # every cycle of January runs to Feb 1
    clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    # The pooled fax units (3) go to a's plan (oldest active USD plan): 3 x 300.
    invoice = await shop.close("2026-01")
    lines = {
        (line.office_id, line.license_type): (line.units, line.amount.amount_minor)
        for line in invoice.lines
    }
    a, b, c = (shop.offices[n] for n in "abc")
    assert lines == {
        (a, "connect"): (1, 1000),
        (b, "connect"): (2, 2000),
        (c, "connect"): (1, 3000),
        (a, "fax"): (3, 900),
    }
    pooled = [line for line in invoice.lines if line.kind == bpb.LINE_KIND_POOLED_UNITS]
    assert [(p.plan_id, p.pooled) for p in pooled] == [(shop.plans["a"], 3)]
    assert sorted(
        (c.amount.currency_code, c.amount.amount_minor) for c in invoice.purchase_charges
    ) == [
        ("JPY", 1597),
        ("USD", 1065),
    ]
    totals = {t.currency_code: t.amount_minor for t in invoice.totals}
    assert totals == {"USD": 1000 + 2000 + 900 + 1065, "JPY": 3000 + 1597}
    assert invoice.reconciliation == bpb.Reconciliation(live_units=7, billed_units=7, balanced=True)
    assert invoice.terminated_units == 1
    assert await shop.states("b", "connect") == {"SPARE": 1, "TERMINATED": 1}

    again = await shop.close("2026-01")
    assert again == invoice
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.close("2026-03")
    assert reason_of(caught.value) == "PERIOD_NOT_STARTED"


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(-62_135_596_801, 0), (253_402_300_800, 0), (0, -1), (0, 10**9)]
)
async def test_a_plan_with_an_invalid_start_time_is_refused(
    shop: Shop, seconds: int, nanos: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shop.billing.CreatePlan(
            bpb.CreatePlanRequest(
                request_id=rid(),
                plan=bpb.Plan(
                    company_id=shop.company_id,
                    office_id=str(uuid.uuid4()),
                    kind=bpb.PLAN_KIND_BUNDLE,
                    currency="USD",
                    start_time=Timestamp(seconds=seconds, nanos=nanos),
                ),
            )
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(raised.value) == "INVALID_TIMESTAMP"
    assert "plan.start_time" in (raised.value.details() or "")
    plans = await shop.billing.ListPlans(bpb.ListPlansRequest(company_id=shop.company_id))
    assert list(plans.plans) == []
