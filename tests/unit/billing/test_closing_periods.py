"""Closing a period on the in-memory unit of work and pool (docs/product.md, "Invoices"):
a period closes only once it has ended for every office's plan, each removal ends with its
own office's cycle, and a charge that completes after its period's invoice is carried to
the next one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.common.errors import DomainError, Unavailable
from services.billing.domain.model import Invoice, PurchaseState
from services.billing.use_cases import invoices, removals
from tests.unit.billing.conftest import Shop

JAN_20 = datetime(2026, 1, 20, 9, 30, tzinfo=UTC)  # b's anchor
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


async def close(shop: Shop, period: str) -> Invoice:
    return await invoices.close_cycle(shop.company_id, period, shop.uow, shop.pool)


async def refusal(shop: Shop, period: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await close(shop, period)
    return caught.value


async def remove(shop: Shop, office: str, n: int) -> removals.Removal:
    command = removals.ScheduleRemoval(
        shop.company_id, f"remove-{shop.clock.now()}-{office}", shop.offices[office], "connect", n
    )
    return await removals.schedule_removal(command, shop.uow, shop.pool)


async def test_a_period_closes_once_it_ended_for_every_office(shop: Shop) -> None:
    await shop.plan("b", start=JAN_20)  # a's January cycle ends Feb 1, b's Feb 20 09:30
    shop.clock.set(FEB_1)
    early = await refusal(shop, "2026-01")
    assert (early.reason, early.metadata["end_time"]) == (
        "PERIOD_NOT_ENDED",
        "2026-02-20T09:30:00+00:00",
    )
    assert shop.uow.state.invoices == {}
    assert "snapshot" not in shop.pool.calls  # refused before anything is done
    shop.clock.set(datetime(2026, 2, 20, 9, 29, 59, tzinfo=UTC))
    assert (await refusal(shop, "2026-01")).reason == "PERIOD_NOT_ENDED"
    shop.clock.set(datetime(2026, 2, 20, 9, 30, tzinfo=UTC))
    assert (await close(shop, "2026-01")).period == "2026-01"


async def test_a_calendar_month_is_a_period_even_before_any_plan_started(shop: Shop) -> None:
    # a started Jan 1: no plan has a cycle in December, which ended on Jan 1.
    assert (await close(shop, "2025-12")).charges == ()
    assert (await refusal(shop, "2026-01")).reason == "PERIOD_NOT_ENDED"


async def test_removals_end_with_their_own_office_cycle(shop: Shop) -> None:
    await shop.plan("b", start=JAN_20)
    shop.add("a", 3)
    shop.add("b", 1)
    january = await remove(shop, "a", 1)  # in a's January cycle: goes Feb 1
    assert january.removal_at == FEB_1
    shop.clock.set(datetime(2026, 2, 5, tzinfo=UTC))
    february = await remove(shop, "a", 1)  # in a's February cycle: goes Mar 1
    b_january = await remove(shop, "b", 1)  # in b's January cycle: goes Feb 20
    assert b_january.removal_at == JAN_20.replace(month=2)

    shop.clock.set(datetime(2026, 2, 21, tzinfo=UTC))
    invoice = await close(shop, "2026-01")
    assert invoice.terminated_units == 2
    ended = {*january.unit_ids, *b_january.unit_ids}
    assert {u for u, unit in shop.pool.units.items() if unit.state == "TERMINATED"} == ended
    (waiting,) = february.unit_ids
    assert shop.pool.units[waiting].state == "REMOVAL_SCHEDULED"  # a's cycle runs to Mar 1

    shop.clock.set(datetime(2026, 3, 21, tzinfo=UTC))
    assert (await close(shop, "2026-02")).terminated_units == 1
    assert shop.pool.units[waiting].state == "TERMINATED"


async def test_a_charge_completed_after_its_period_was_invoiced_is_carried(shop: Shop) -> None:
    shop.add("a", 1, state="REMOVAL_SCHEDULED")
    shop.pool.refuse("restore_from_removal", Unavailable("POOL_UNAVAILABLE", "down"))
    command = shop.command("a", 3)
    with pytest.raises(DomainError):
        await shop.saga.purchase(command)  # failed before the pivot, for a retry
    shop.clock.set(FEB_1)
    january = await close(shop, "2026-01")
    assert january.charges == ()

    bought = await shop.saga.purchase(command)  # the retry: a new attempt, January's cycle
    assert (bought.state, bought.cycle.start) == (PurchaseState.COMPLETED, JAN_1)
    assert (await close(shop, "2026-01")).charges == ()  # the invoice made stays as it was
    shop.clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    february = await close(shop, "2026-02")
    (carried,) = february.charges
    assert (carried.purchase_id, carried.period, carried.amount) == (
        bought.purchase_id,
        "2026-01",
        bought.amount,
    )
    assert february.totals["USD"] == sum(line.amount for line in february.lines) + bought.amount
    shop.clock.set(datetime(2026, 4, 1, tzinfo=UTC))
    assert (await close(shop, "2026-03")).charges == ()  # on one invoice only


async def test_closing_a_later_period_first_takes_the_earlier_charges_once(shop: Shop) -> None:
    bought = await shop.buy("a", 2)
    shop.clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    february = await close(shop, "2026-02")
    assert [c.purchase_id for c in february.charges] == [bought.purchase_id]
    assert (await close(shop, "2026-01")).charges == ()
