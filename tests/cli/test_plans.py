"""Named offices and plans, and a plan's price book (billing), through the installed
command."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli, needs_billing

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow, needs_billing]


async def test_offices_and_plans_have_names_listed_in_creation_order(cli: Cli) -> None:
    created = cli.ok(
        "office", "create", "--currency", "USD", "--name", "Zurich", "--price", "connect=1500"
    ).stdout
    assert "Zurich" in created
    zurich = cli.ok("office", "list", "--json").json()["offices"][0]["office_id"]
    amsterdam = cli.office("USD", "--name", "Amsterdam", "--plan-name", "Amsterdam legacy deal")

    listed = cli.ok("office", "list", "--json").json()["offices"]
    assert [(o["display_name"], o["office_id"]) for o in listed] == [
        ("Zurich", zurich),
        ("Amsterdam", amsterdam),
    ]  # by creation, not by name or id
    table = cli.ok("office", "list").stdout
    assert table.index("Zurich") < table.index("Amsterdam")

    plans = cli.ok("plan", "list", "--json").json()["plans"]
    assert [p["display_name"] for p in plans] == ["Zurich", "Amsterdam legacy deal"]
    plan_table = cli.ok("plan", "list").stdout
    assert "Amsterdam legacy deal" in plan_table
    assert "Amsterdam (" in plan_table

    renamed = cli.ok("plan", "rename", amsterdam, "Amsterdam standard", "--json").json()
    assert renamed["plan"]["display_name"] == "Amsterdam standard"
    # billing tells the pool the office's facts again: the office keeps its name
    assert cli.ok("office", "list", "--json").json()["offices"][1]["display_name"] == "Amsterdam"


async def test_a_type_without_a_price_is_bought_once_the_plan_prices_it(cli: Cli) -> None:
    office = cli.office("CAD", "--name", "Toronto", "--price", "connect=1500")
    unpriced = cli("checkout", "purchase", office, "sell", "1", "--json")
    assert unpriced.code == 2

    priced = cli.ok("plan", "set-price", office, "sell=2500", "--json").json()["plan"]
    prices = {p["license_type"]: p["unit_price"]["amount_minor"] for p in priced["prices"]}
    assert prices == {"connect": "1500", "sell": "2500"}  # connect kept
    shown = cli.ok("plan", "show", office).stdout
    assert "Toronto" in shown
    assert "CA$25.00" in shown
    assert cli.ok("plan", "show", office, "--json").json()["plan"]["display_name"] == "Toronto"

    bought = cli.ok("checkout", "purchase", office, "sell", "1", "--json").json()["purchase"]
    assert bought["state"] == "PURCHASE_STATE_COMPLETED"

    bad = cli("plan", "set-price", office, "sell=lots")
    assert bad.code == 2
    assert "TYPE=AMOUNT" in bad.stderr
    no_plan = cli.office("CAD", "--no-plan")
    missing = cli("plan", "show", no_plan)
    assert missing.code == 2
    assert "no active plan" in missing.stderr
