"""Charges billed in advance (docs/product.md, "Invoices"), pure: a charge of the period
after the invoice's has its new units on the invoice's lines for the whole cycle it
prorates, so it credits that full cycle and line plus charge are the prorated amount.
Values worked out by hand."""

import uuid
from datetime import UTC, datetime

import pytest

from services.billing.domain import cycles, invoicing
from services.billing.domain.model import InvoiceLine, LineKind, PurchaseCharge

OFFICE, PLAN = uuid.uuid4(), uuid.uuid4()


def charge(period: str, new_units: int, amount: int, unit_price: int) -> PurchaseCharge:
    return PurchaseCharge(
        uuid.uuid4(),
        OFFICE,
        PLAN,
        "connect",
        "USD",
        new_units,
        amount,
        datetime(2026, 2, 15, tzinfo=UTC),
        period,
        unit_price,
    )


@pytest.mark.parametrize(
    ("period", "following"),
    [
        ("2026-01", "2026-02"),
        ("2026-11", "2026-12"),
        ("2026-12", "2027-01"),
        ("0999-12", "1000-01"),
    ],
)
def test_the_next_period(period: str, following: str) -> None:
    assert cycles.next_period(period) == following


def test_a_charge_in_advance_credits_the_full_cycle_of_its_units() -> None:
    # 3 units at $10.00 bought with 14 of February's 28 days left: $15.00 prorated.
    bought = charge("2026-02", 3, 1500, 1000)
    advanced = invoicing.in_advance(bought)
    assert advanced.billed_in_advance
    assert advanced.adjustment == -3000  # the full cycle the lines bill for the 3 units
    assert advanced.amount == -1500  # $15.00 - $30.00: a credit on this invoice
    assert advanced.prorated == 1500
    # With the line's 3 units at the same price, the customer pays the prorated $15.00.
    line = InvoiceLine(LineKind.OFFICE_UNITS, OFFICE, PLAN, "USD", "connect", 3, 0, 0, 0, 0, 1000)
    assert line.amount + advanced.amount == 1500


def test_a_purchase_in_the_cycles_first_second_pays_exactly_the_line() -> None:
    advanced = invoicing.in_advance(charge("2026-02", 2, 2000, 1000))
    assert (advanced.amount, advanced.adjustment) == (0, -2000)


def test_a_unit_price_of_zero_credits_nothing() -> None:
    advanced = invoicing.in_advance(charge("2026-02", 4, 0, 0))
    assert (advanced.amount, advanced.adjustment, advanced.billed_in_advance) == (0, 0, True)


def test_only_the_charges_of_a_later_period_are_billed_in_advance() -> None:
    own, carried, ahead = (
        charge("2026-01", 1, 700, 1000),
        charge("2025-12", 1, 300, 1000),
        charge("2026-02", 2, 1200, 1000),
    )
    result = invoicing.carried("2026-01", [own, carried, ahead])
    assert result[:2] == [own, carried]  # unchanged: their own amounts
    assert (result[2].billed_in_advance, result[2].amount, result[2].adjustment) == (
        True,
        -800,
        -2000,
    )
    # The totals take the adjusted amount: 700 + 300 + (1200 - 2000).
    assert invoicing.totals([], result) == {"USD": 200}


def test_billing_in_advance_twice_changes_nothing() -> None:
    once = invoicing.in_advance(charge("2026-02", 1, 600, 1000))
    assert invoicing.in_advance(once) == once
