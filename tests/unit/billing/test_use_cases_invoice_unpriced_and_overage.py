"""What an invoice says beyond units at a price (docs/product.md, "Invoices"): units no
price applies to are flagged and counted, never billed at 0 silently; each office's credit
overage of the period is read from the credits service once per close and billed on the
office's plan."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.billing.domain.model import Invoice
from services.billing.repository.rows import to_invoice
from services.billing.use_cases import invoices
from tests.fakes.billing import FakeCredits
from tests.unit.billing.conftest import JAN_1, Shop

FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


async def close_january(shop: Shop, credits: FakeCredits | None = None) -> Invoice:
    """January's invoice, made once January's cycles have ended."""
    shop.clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    return await invoices.close_cycle(shop.company_id, "2026-01", shop.uow, shop.pool, credits)


async def test_units_without_a_price_are_flagged_and_counted(shop: Shop) -> None:
    shop.add("a", 2)  # connect: priced at 1000
    shop.pool.add(shop.company_id, shop.offices["a"], "sell", 3)  # added straight to the pool
    shop.pool.add(shop.company_id, None, "fax", 1, state="POOLED")
    invoice = await close_january(shop)
    flagged = {(line.license_type, line.units) for line in invoice.lines if line.unpriced}
    assert flagged == {("sell", 3), ("fax", 1)}
    assert all(line.amount == 0 for line in invoice.lines if line.unpriced)
    assert invoice.reconciliation.balanced  # every unit billed once ...
    assert invoice.unpriced_units == invoice.reconciliation.unpriced_units == 4  # ... 4 at no price
    assert invoice.totals == {"USD": 2000}


async def test_a_type_priced_at_zero_is_priced(shop: Shop) -> None:
    await shop.plan("b", {"connect": 0})
    shop.add("b", 2)
    invoice = await close_january(shop)
    assert [line.unpriced for line in invoice.lines] == [False]
    assert invoice.unpriced_units == 0


async def test_the_periods_credit_overage_is_billed_on_the_offices_plan(shop: Shop) -> None:
    credits = FakeCredits()
    office = shop.offices["a"]
    credits.owe(shop.company_id, office, JAN_1, 450)
    credits.owe(shop.company_id, office, FEB_1, 99)  # the next period's: not on this invoice
    credits.owe(uuid.uuid4(), office, JAN_1, 7)  # another company's
    shop.add("a", 1)
    invoice = await close_january(shop, credits)
    (owed,) = invoice.overages
    (plan,) = shop.uow.state.plans.values()
    assert (owed.office_id, owed.plan_id, owed.amount) == (office, plan.plan_id, 450)
    assert (owed.period_start, owed.period_end) == (JAN_1, FEB_1)
    assert invoice.overage_included
    assert invoice.totals == {"USD": 1000 + 450}
    assert invoice.reconciliation.balanced
    again = await close_january(shop, credits)
    assert again.overages == invoice.overages
    assert credits.calls == ["period_overage"]  # one call per close


async def test_without_a_credits_service_the_invoice_says_it_has_no_overage(
    shop: Shop,
) -> None:
    invoice = await close_january(shop)
    assert (invoice.overages, invoice.overage_included) == ((), False)


def test_an_invoice_stored_before_the_flags_reads_as_it_was_billed() -> None:
    """Rows written before unpriced lines and overage existed: every line priced, no
    overage, the credits service not asked."""
    row = {
        "invoice_id": uuid.uuid4(),
        "company_id": uuid.uuid4(),
        "period": "2025-12",
        "snapshot_at": JAN_1,
        "lines": [
            {
                "kind": "OFFICE_UNITS",
                "office_id": str(uuid.uuid4()),
                "plan_id": None,
                "currency": "USD",
                "license_type": "connect",
                "assigned": 1,
                "spare": 0,
                "removal_scheduled": 0,
                "held": 0,
                "pooled": 0,
                "unit_price": 0,
            }
        ],
        "charges": [],
        "live_units": 1,
        "billed_units": 1,
        "balanced": True,
        "terminated_units": 0,
        "terminations_done": True,
        "created_at": JAN_1,
        "overages": [],
        "overage_included": False,
    }
    invoice, done = to_invoice(row)  # type: ignore[arg-type]
    assert done
    assert [line.unpriced for line in invoice.lines] == [False]
    assert (invoice.unpriced_units, invoice.overages, invoice.overage_included) == (0, (), False)
