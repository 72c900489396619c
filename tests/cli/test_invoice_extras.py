"""What an invoice shows beyond priced units, through the installed command: lines no
price applies to are marked UNPRICED and counted, and the credit overage of the period is
billed; the plan's allowance is what the credit account draws first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.cli.conftest import HAS_BILLING, Cli

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.slow,
    pytest.mark.skipif(not HAS_BILLING, reason="billing is not in this checkout"),
]


def last_month() -> tuple[str, str]:
    """The previous calendar month: its first instant (ISO 8601) and its period."""
    now = datetime.now(UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    first = datetime(year, month, 1, tzinfo=UTC)
    return first.isoformat(), first.strftime("%Y-%m")


async def test_unpriced_units_and_credit_overage_are_on_the_invoice(cli: Cli) -> None:
    start, period = last_month()
    office = cli.office("USD", "--price", "connect=1000", "--allowance", "500", "--start", start)
    cli.ok("pool", "add-units", office, "connect", "1")
    cli.ok("pool", "add-units", office, "sell", "2")  # straight through the pool, no price
    during = start.replace("T00:00:00", "T12:00:00")
    usage = cli.ok("usage", "record", office, "800", "--at", during, "--json").json()["usage"]
    assert usage["split"]["allowance_minor"] == "500"  # the plan's allowance
    assert usage["split"]["overage_minor"] == "300"

    closed = cli.ok("cycle", "close", period, "--json").json()["invoice"]
    unpriced = {line["license_type"]: line.get("unpriced", False) for line in closed["lines"]}
    assert unpriced == {"connect": False, "sell": True}
    assert closed["unpriced_units"] == "2"
    assert closed["reconciliation"]["unpriced_units"] == "2"
    assert closed["reconciliation"]["balanced"] is True
    (owed,) = closed["credit_overages"]
    assert (owed["office_id"], owed["amount"]["amount_minor"]) == (office, "300")
    assert closed["totals"] == [{"amount_minor": "1300", "currency_code": "USD"}]

    table = cli.ok("cycle", "invoice", closed["invoice_id"]).stdout
    assert "UNPRICED" in table
    assert "2 unit(s) on UNPRICED lines" in table
    assert "Credit overage" in table
    assert "$3.00" in table
    listed = cli.ok("cycle", "invoices").stdout
    assert "unpriced units" in listed


async def test_a_purchase_of_the_next_cycle_before_the_close_shows_billed_in_advance(
    cli: Cli,
) -> None:
    start, period = last_month()
    office = cli.office("USD", "--price", "connect=1000", "--start", start)
    # This month is the office's next cycle; last month's is over but not closed yet.
    bought = cli.ok("checkout", "purchase", office, "connect", "2", "--json").json()
    purchase = bought["purchase"]
    assert purchase["period"] != period
    prorated = int(purchase["amount"]["amount_minor"])

    closed = cli.ok("cycle", "close", period, "--json").json()["invoice"]
    (charge,) = closed["purchase_charges"]
    assert charge["purchase_id"] == purchase["purchase_id"]
    assert charge["billed_in_advance"] is True
    assert charge["adjustment"]["amount_minor"] == "-2000"
    assert int(charge["amount"]["amount_minor"]) == prorated - 2000
    # The two units on the line ($20.00 for this month) and the charge: the prorated amount.
    assert closed["totals"] == [{"amount_minor": str(prorated), "currency_code": "USD"}]

    table = cli.ok("cycle", "invoice", closed["invoice_id"]).stdout
    assert "IN ADVANCE" in table
    assert "-$20.00" in table
