"""Plans, quotes, removals and closing a cycle on the in-memory unit of work and pool
(docs/product.md, "Companies, offices and plans", "Removals and restores", "Invoices")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from libs.common.errors import DomainError, Unavailable
from services.billing.domain.model import PlanKind, Split
from services.billing.use_cases import invoices, plans, purchases, removals
from tests.unit.billing.conftest import Shop, shop_on

FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


async def refused(call: object) -> str:
    with pytest.raises(DomainError) as caught:
        await call  # type: ignore[misc]
    return caught.value.reason


async def test_a_plan_tells_the_pool_its_office_first(shop: Shop) -> None:
    office = shop.pool.offices[(shop.company_id, shop.offices["a"])]
    assert (office.currency, office.kind) == ("USD", PlanKind.BUNDLE)


async def test_an_office_has_one_active_plan(shop: Shop) -> None:
    assert await refused(shop.plan("a")) == "OFFICE_HAS_ACTIVE_PLAN"
    assert shop.pool.calls.count("put_office") == 1  # refused before the pool is told


async def test_a_pooled_currency_needs_one_price_per_type(shop: Shop) -> None:
    await shop.plan("b", {"connect": 900})
    shop.enable()
    assert await refused(shop.buy("a", 1)) == "PRICING_MISMATCH"
    assert await refused(shop.quote("a", 1)) == "PRICING_MISMATCH"
    found, enabled = await plans.pricing_parity(shop.company_id, "USD", shop.uow, shop.pool)
    assert enabled
    assert [m.license_type for m in found] == ["connect"]
    assert shop.uow.state.purchases == {}


async def test_an_unpriced_type_is_refused(shop: Shop) -> None:
    await shop.plan("b", {"phone": 500})
    assert await refused(shop.buy("b", 1)) == "LICENSE_TYPE_NOT_PRICED"


async def test_an_office_of_another_company_is_not_found(shop: Shop) -> None:
    other = shop_on(shop.clock)
    other.uow, other.pool = shop.uow, shop.pool
    other.offices["a"] = shop.offices["a"]
    assert await refused(other.quote("a", 1)) == "OFFICE_NOT_FOUND"
    other.offices["z"] = uuid.uuid4()
    assert await refused(other.quote("z", 1)) == "NO_ACTIVE_PLAN"


async def test_a_preview_quote_holds_nothing(shop: Shop) -> None:
    shop.enable()
    shop.add("a", 1, state="REMOVAL_SCHEDULED")
    shop.pooled(2)
    quote = await shop.quote("a", 4)
    assert (quote.quote_id, quote.split) == (None, Split(1, 2, 1))
    assert shop.pool.holds == {}
    assert shop.uow.state.quotes == {}


async def test_a_quote_tells_own_returns_apart_from_pool_units(shop: Shop) -> None:
    shop.enable()
    await shop.plan("b")
    shop.pooled(2, returned_by="a")  # a's own returns, still in grace
    shop.pooled(1, returned_by="b")  # in b's grace: not for a
    shop.pooled(2)  # claimable by anyone
    preview = await shop.quote("a", 5)
    assert (preview.split, preview.own_returns) == (Split(0, 4, 1), 2)
    held = await shop.quote("a", 3, hold=True)
    assert (held.split, held.own_returns) == (Split(0, 3, 0), 2)
    assert (await shop.quote("b", 1)).own_returns == 1


async def test_removals_end_with_the_cycle_and_not_on_a_contracted_plan(shop: Shop) -> None:
    shop.add("a", 2)
    command = removals.ScheduleRemoval(shop.company_id, "r", shop.offices["a"], "connect", 1)
    removal = await removals.schedule_removal(command, shop.uow, shop.pool)
    assert len(removal.unit_ids) == 1
    assert removal.removal_at.isoformat() == "2026-02-01T00:00:00+00:00"
    await shop.plan("c", contracted=True)
    contracted = removals.ScheduleRemoval(shop.company_id, "s", shop.offices["c"], "connect", 1)
    assert await refused(removals.schedule_removal(contracted, shop.uow, shop.pool)) == (
        "CONTRACTED_PLAN"
    )


async def test_closing_a_cycle_invoices_once_and_ends_the_removals(shop: Shop) -> None:
    shop.add("a", 2)
    shop.add("a", 1, state="REMOVAL_SCHEDULED")
    await shop.buy("a", 1)
    shop.clock.set(FEB_1)
    invoice = await invoices.close_cycle(shop.company_id, "2026-01", shop.uow, shop.pool)
    assert invoice.reconciliation.balanced
    assert invoice.terminated_units == 0  # the purchase restored the scheduled one
    assert [c.new_units for c in invoice.charges] == []
    again = await invoices.close_cycle(shop.company_id, "2026-01", shop.uow, shop.pool)
    assert again.invoice_id == invoice.invoice_id
    assert shop.pool.calls.count("snapshot") == 1


async def test_scheduled_removals_are_terminated_at_the_close(shop: Shop) -> None:
    shop.add("a", 3, state="REMOVAL_SCHEDULED")
    shop.clock.set(FEB_1)
    invoice = await invoices.close_cycle(shop.company_id, "2026-01", shop.uow, shop.pool)
    assert invoice.terminated_units == 3
    assert shop.pool.states() == {"TERMINATED": 3}


async def test_a_cycle_with_a_purchase_under_way_cannot_close(shop: Shop) -> None:
    shop.pool.refuse("add_units", Unavailable("POOL_UNAVAILABLE", "down"))  # after the pivot
    with pytest.raises(DomainError):
        await shop.buy("a", 1)
    shop.uow.state.end_leases()
    shop.clock.set(FEB_1)
    reason = await refused(invoices.close_cycle(shop.company_id, "2026-01", shop.uow, shop.pool))
    assert reason == "PURCHASES_IN_PROGRESS"
    assert await refused(invoices.close_cycle(shop.company_id, "2026-04", shop.uow, shop.pool)) == (
        "PERIOD_NOT_STARTED"
    )


async def test_purchases_are_listed_newest_first(shop: Shop) -> None:
    first = await shop.buy("a", 1)
    shop.clock.advance(seconds=1)
    second = await shop.buy("a", 1)
    page = purchases.PurchasePage(shop.company_id, None, "2026-01", None, 10)
    found = await purchases.list_purchases(page, shop.uow)
    assert [p.purchase_id for p in found] == [second.purchase_id, first.purchase_id]
