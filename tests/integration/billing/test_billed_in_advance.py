"""A license bought in an office's next cycle before the company's close, through real gRPC
and PostgreSQL (docs/product.md, "Invoices"): the close's lines bill its units that whole
cycle, so the close's invoice carries its charge billed in advance, with a credit for the
cycle's part before the purchase; the next period's invoice does not bill it again."""

import uuid
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest

from libs.common.clock import FakeClock
from libs.common.error_status import error_info
from licensing.billing.v1 import billing_pb2 as bpb
from services.billing.domain import cycles
from services.billing.domain.model import Purchase, PurchaseState, Split
from services.billing.domain.purchase import Step
from services.billing.repository.purchases import Purchases
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


async def test_a_close_waits_for_a_next_cycle_purchase_it_cannot_place(
    shop: Shop, clock: FakeClock, db: asyncpg.Pool
) -> None:
    """A purchase of the next cycle adding its units, or completed after the close's
    instant, may or may not be in the snapshot: the close is refused, and made once the
    purchase completed before a close's instant."""
    early_start = datetime(2026, 1, 1, tzinfo=UTC)
    await shop.plan("early", "USD", PRICES, early_start, primary=True)
    await shop.plan("late", "USD", PRICES, datetime(2026, 1, 20, 9, 30, tzinfo=UTC))
    bought_at = datetime(2026, 2, 10, tzinfo=UTC)
    purchase = Purchase(  # as its driver writes it, stopped before AddUnits answered
        purchase_id=uuid.uuid4(),
        company_id=uuid.UUID(shop.company_id),
        request_id=str(uuid.uuid4()),
        office_id=uuid.UUID(shop.offices["early"]),
        license_type="connect",
        quantity=2,
        state=PurchaseState.PENDING,
        plan_id=uuid.UUID(shop.plans["early"]),
        currency="USD",
        unit_price=1000,
        cycle=cycles.cycle_at(early_start, bought_at),
        purchased_at=bought_at,
        attempt=1,
        step=Step.CREATED,
    )
    split = Split(restored=0, from_pool=0, new=2)
    async with db.acquire() as conn:
        purchases = Purchases(conn)
        assert await purchases.insert(purchase, b"test", uuid.uuid4(), 600)
        await purchases.set_split(
            purchase.company_id, purchase.purchase_id, Step.ADDING, split, None, []
        )

    close_at = datetime(2026, 2, 20, 9, 30, tzinfo=UTC)
    clock.set(close_at)

    async def refused() -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await shop.close("2026-01")
        assert caught.value.code() == grpc.StatusCode.ABORTED
        info = error_info(caught.value)
        assert info is not None
        assert (info.reason, dict(info.metadata)) == (
            "PURCHASES_IN_PROGRESS",
            {"period": "2026-02"},
        )
        listed = await shop.billing.ListInvoices(
            bpb.ListInvoicesRequest(company_id=shop.company_id)
        )
        assert list(listed.invoices) == []  # nothing written, the claim rolled back

    await refused()  # adding its units
    async with db.acquire() as conn:  # completes after the close's instant
        done = await Purchases(conn).complete(
            purchase.company_id, purchase.purchase_id, split, 1357, [], close_at.replace(minute=31)
        )
    assert done is not None
    await refused()

    clock.set(close_at.replace(minute=31))
    january = await shop.close("2026-01")
    (charge,) = january.purchase_charges
    assert (charge.purchase_id, charge.billed_in_advance, charge.adjustment) == (
        str(purchase.purchase_id),
        True,
        usd(-2000),
    )
    assert charge.amount == usd(1357 - 2000)
