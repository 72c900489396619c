"""Checkout and invoices (billing) through the installed command."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.cli.conftest import Cli, needs_billing

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow, needs_billing]

PRICES = ("--price", "connect=2000", "--price", "sell=3000")


async def test_quote_says_how_many_come_from_the_pool_then_purchase(cli: Cli) -> None:
    first = cli.office("USD", "--primary", *PRICES)
    second = cli.office("USD", *PRICES)
    cli.ok("pool", "add-units", first, "connect", "2")
    cli.ok("pool", "enable", "USD")

    quote = cli.ok("checkout", "quote", second, "connect", "3", "--json").json()["quote"]
    assert (quote["from_pool"], quote["new_units"], quote["restored"]) == (2, 1, 0)
    assert "2 from pool" in quote["message"]
    words = cli.ok("checkout", "quote", second, "connect", "3").stdout
    assert "2 from pool" in words
    assert "$20.00" in words  # the unit price

    held = cli.ok("checkout", "quote", second, "connect", "3", "--hold", "--json").json()["quote"]
    assert held["quote_id"]
    bought = cli.ok("checkout", "purchase", "--quote-id", held["quote_id"], "--json").json()
    purchase = bought["purchase"]
    assert purchase["state"] == "PURCHASE_STATE_COMPLETED"
    assert (purchase["from_pool"], purchase["new_units"]) == (2, 1)
    assert len(purchase["unit_ids"]) == 3

    again = cli.ok("checkout", "purchase", second, "sell", "1")
    assert "Purchased" in again.stdout
    assert "1 new" in again.stdout


async def test_pricing_mismatch_is_explained(cli: Cli) -> None:
    first = cli.office("AUD", "--price", "connect=2000")
    cli.office("AUD", "--price", "connect=2500")
    enabled = cli.ok("pool", "enable", "AUD", "--json").json()
    assert enabled["price_mismatches"][0]["license_type"] == "connect"
    result = cli("checkout", "purchase", first, "connect", "1")
    assert result.code == 2
    assert "PRICING_MISMATCH" in result.stderr
    assert "disagree on the price" in result.stderr


async def test_close_a_cycle_and_print_the_invoice(cli: Cli) -> None:
    office = cli.office("NZD", "--primary", "--name", "Wellington", *PRICES)
    bought = cli.ok("checkout", "purchase", office, "connect", "2").stdout
    assert f"Wellington ({office[:8]})" in bought
    closed = cli.ok("cycle", "close", "--json").json()["invoice"]
    assert closed["reconciliation"]["balanced"] is True
    assert closed["reconciliation"]["live_units"] == "2"
    lines = [(line["license_type"], line["units"]) for line in closed["lines"]]
    assert lines == [("connect", "2")]

    table = cli.ok("cycle", "invoice", closed["invoice_id"]).stdout
    assert "every live unit billed exactly once" in table
    assert "connect" in table
    assert f"Wellington ({office[:8]})" in table  # offices by name, as everywhere
    # Closing the same period again gives the same invoice.
    period = closed["period"]
    again = cli.ok("cycle", "close", period, "--json").json()["invoice"]
    assert again["invoice_id"] == closed["invoice_id"]
    listed = cli.ok("cycle", "invoices", "--json").json()["invoices"]
    assert [i["invoice_id"] for i in listed] == [closed["invoice_id"]]

    this_month = datetime.now(UTC).strftime("%Y-%m")
    early = cli("cycle", "close", this_month)
    assert early.code == 2
    assert "PERIOD_NOT_ENDED" in early.stderr
    assert "has not ended for every office" in early.stderr

    bad = cli("cycle", "close", "2026-13")
    assert bad.code == 2
    assert "YYYY-MM" in bad.stderr
