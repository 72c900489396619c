"""Closing periods and telling own returns apart through real gRPC and PostgreSQL
(docs/product.md, "Invoices", "Checkout and purchases"): a period is refused until it has
ended for every office's plan; a charge whose period was invoiced before it was made is
carried, once, by the next invoice; a held quote tells the office's own returns from the
pool's units by the pool's receipt."""

import asyncio
from datetime import UTC, datetime

import grpc
import pytest

from libs.common.clock import FakeClock
from libs.common.error_status import error_info
from tests.support.billing import Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
PRICES = {"connect": 1000}


async def refusal(shop: Shop, period: str) -> tuple[str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.close(period)
    info = error_info(caught.value)
    assert info is not None
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    return info.reason, dict(info.metadata)


async def test_a_period_is_refused_until_it_ended_for_every_office(
    shop: Shop, clock: FakeClock
) -> None:
    await shop.plan("a", "USD", PRICES, JAN_1, primary=True)
    await shop.plan("b", "USD", PRICES, datetime(2026, 1, 12, 8, tzinfo=UTC))
    clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    assert await refusal(shop, "2026-01") == (
        "PERIOD_NOT_ENDED",
        {"period": "2026-01", "end_time": "2026-02-12T08:00:00+00:00"},
    )
    assert (await refusal(shop, "2026-03"))[0] == "PERIOD_NOT_STARTED"
    clock.set(datetime(2026, 2, 12, 8, tzinfo=UTC))
    assert (await shop.close("2026-01")).period == "2026-01"


async def test_a_charge_of_an_invoiced_period_is_carried_once(shop: Shop, clock: FakeClock) -> None:
    await shop.plan("a", "USD", PRICES, JAN_1, primary=True)
    bought_in_january = await shop.buy("a", "connect", 1)
    clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    january = await shop.close("2026-01")
    assert [c.purchase_id for c in january.purchase_charges] == [bought_in_january.purchase_id]
    # A plan started back-dated into January: its cycle runs Jan 25 to Feb 25, so its
    # purchase belongs to the period already invoiced.
    await shop.plan("late", "USD", PRICES, datetime(2026, 1, 25, tzinfo=UTC))
    late = await shop.buy("late", "connect", 2)
    assert late.period == "2026-01"
    assert (await shop.close("2026-01")) == january  # the invoice made stays as it was

    clock.set(datetime(2026, 3, 25, tzinfo=UTC))
    february = await shop.close("2026-02")
    (carried,) = february.purchase_charges
    assert (carried.purchase_id, carried.period, carried.amount) == (
        late.purchase_id,
        "2026-01",
        late.amount,
    )
    lines = sum(line.amount.amount_minor for line in february.lines)
    assert [t.amount_minor for t in february.totals] == [lines + late.amount.amount_minor]
    clock.set(datetime(2026, 4, 25, tzinfo=UTC))
    assert list((await shop.close("2026-03")).purchase_charges) == []


async def test_a_held_quote_counts_own_returns_from_the_receipt(
    shop: Shop, clock: FakeClock
) -> None:
    await shop.plan("a", "USD", PRICES, JAN_1, primary=True)
    await shop.plan("b", "USD", PRICES, JAN_1)
    await shop.add("b", "connect", 1)  # pooled on enabling, claimable at once
    await shop.enable("USD")
    await shop.add("a", "connect", 2)
    await shop.give_back(await shop.acquire("a", "connect", 2))  # a's own, in grace
    preview = await shop.quote("a", "connect", 4)
    assert (preview.from_pool, preview.own_returns, preview.new_units) == (3, 2, 1)
    held = await shop.quote("a", "connect", 2, hold=True)
    assert (held.from_pool, held.own_returns) == (2, 2)  # own returns come first
    other = await shop.quote("b", "connect", 1)
    assert (other.from_pool, other.own_returns) == (1, 0)  # a's returns are not b's


async def test_closes_of_one_period_at_once_make_one_invoice_with_each_charge_once(
    shop: Shop, clock: FakeClock
) -> None:
    await shop.plan("a", "USD", PRICES, JAN_1, primary=True)
    bought = [await shop.buy("a", "connect", 1) for _ in range(3)]
    clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    closes = await asyncio.gather(*(shop.close(p) for p in ["2026-01", "2026-01", "2026-02"]))
    assert closes[0] == closes[1]
    carried = [c.purchase_id for invoice in closes[1:] for c in invoice.purchase_charges]
    assert sorted(carried) == sorted(b.purchase_id for b in bought)  # each on one invoice
