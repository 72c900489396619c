"""A license bought in an office's next cycle before the company's close, through real gRPC
and PostgreSQL (docs/product.md, "Invoices"): the close's lines bill its units that whole
cycle, so the close's invoice carries its charge billed in advance, with a credit for the
cycle's part before the purchase; the next period's invoice does not bill it again."""

from datetime import UTC, datetime

import pytest

from libs.common.clock import FakeClock
from licensing.billing.v1 import billing_pb2 as bpb
from tests.support.billing import Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")

PRICES = {"connect": 1000}


def usd(amount: int) -> bpb.Money:
    return bpb.Money(currency_code="USD", amount_minor=amount)


async def test_a_purchase_in_the_next_cycle_before_the_close_is_billed_once_in_advance(
    shop: Shop, clock: FakeClock
) -> None:
    await shop.plan("early", "USD", PRICES, datetime(2026, 1, 1, tzinfo=UTC), primary=True)
    await shop.plan("late", "USD", PRICES, datetime(2026, 1, 20, 9, 30, tzinfo=UTC))
    clock.set(datetime(2026, 1, 20, 10, tzinfo=UTC))
    january_own = await shop.buy("late", "connect", 1)  # late's January cycle
    assert january_own.period == "2026-01"

    # Early's February cycle (Feb 1 to Mar 1) has begun; January is not over for late
    # (its cycle runs to Feb 20 09:30), so the company cannot close it yet.
    clock.set(datetime(2026, 2, 10, tzinfo=UTC))
    ahead = await shop.buy("early", "connect", 2)
    assert ahead.period == "2026-02"
    assert ahead.amount == usd(1357)  # 2 x $10.00 x 19 of 28 days = $13.57

    clock.set(datetime(2026, 2, 20, 9, 30, tzinfo=UTC))
    january = await shop.close("2026-01")
    names = {office_id: name for name, office_id in shop.offices.items()}
    lines = {(names[line.office_id], line.units): line.amount for line in january.lines}
    # Every live unit billed the next cycle in full, early's two bought in February too.
    assert lines == {("early", 2): usd(2000), ("late", 1): usd(1000)}
    own, advance = january.purchase_charges
    assert (own.purchase_id, own.billed_in_advance, own.amount) == (
        january_own.purchase_id,
        False,
        january_own.amount,
    )
    assert not own.HasField("adjustment")
    assert (advance.purchase_id, advance.period, advance.new_units) == (
        ahead.purchase_id,
        "2026-02",
        2,
    )
    assert advance.billed_in_advance
    assert advance.adjustment == usd(-2000)  # the full February cycle the lines bill
    assert advance.amount == usd(1357 - 2000)
    # Early's two new units cost, for February, exactly their prorated $13.57.
    assert lines[("early", 2)].amount_minor + advance.amount.amount_minor == 1357
    assert list(january.totals) == [usd(2000 + 1000 + january_own.amount.amount_minor - 643)]
    assert january.reconciliation.balanced

    clock.set(datetime(2026, 3, 20, 9, 30, tzinfo=UTC))
    february = await shop.close("2026-02")
    assert list(february.purchase_charges) == []  # carried by January's invoice already
    assert list(february.totals) == [usd(3000)]  # March in advance, every unit in full
    fetched = await shop.billing.GetInvoice(
        bpb.GetInvoiceRequest(company_id=shop.company_id, invoice_id=january.invoice_id)
    )
    assert fetched.invoice == january  # stored as made, adjustment and flag included
