"""Office caps, balance thresholds and credit alerts through the installed command."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_a_capped_office_and_an_alert_on_the_shared_balance(cli: Cli) -> None:
    capped = cli.office("USD", "--no-plan")
    other = cli.office("USD", "--no-plan")
    cli.ok("usage", "pooling", "usd", "--on")
    cli.ok("usage", "grant", "10000", "--currency", "USD")

    set_cap = cli.ok("credits", "cap", "set", capped, "1500", "--json").json()
    assert (set_cap["cap"]["cap_minor"], set_cap["cap"]["currency"]) == ("1500", "USD")
    assert "may draw $15.00" in cli.ok("credits", "cap", "set", capped, "1500").stdout

    thresholds = cli.ok(
        "credits", "threshold", "set", "usd", "--balance", "5000", "--percent", "20", "--json"
    ).json()
    assert thresholds["thresholds"] == [{"balance_minor": "5000"}, {"percent": 20}]
    shown = cli.ok("credits", "threshold", "show", "USD").stdout
    assert "20% of the top-up level" in shown
    assert "$100.00" in shown  # the top-up level

    used = cli.ok("usage", "record", capped, "2000", "--json").json()["usage"]
    assert used["split"]["company_pool_minor"] == "1500"
    assert used["split"]["overage_minor"] == "500"
    listed = cli.ok("credits", "cap", "list", "--json").json()
    assert [(c["office_id"], c["drawn_minor"]) for c in listed["caps"]] == [(capped, "1500")]
    assert "$15.00" in cli.ok("credits", "cap", "list").stdout

    assert cli.ok("credits", "alerts", "--json").json()["alerts"] == []
    cli.ok("usage", "record", other, "4000")  # 4500 left: below 5000
    [alert] = cli.ok("credits", "alerts", "--json").json()["alerts"]
    assert (alert["level_minor"], alert["balance_minor"]) == ("5000", "4500")
    assert alert["office_id"] == other
    assert "$45.00" in cli.ok("credits", "alerts").stdout

    cleared = cli.ok("credits", "cap", "clear", capped, "--json").json()
    assert cleared == {"cleared": True}
    assert "had no cap" in cli.ok("credits", "cap", "clear", capped).stdout
    assert cli.ok("credits", "cap", "list", "--json").json()["caps"] == []


async def test_bad_thresholds_are_explained(cli: Cli) -> None:
    result = cli("credits", "threshold", "set", "USD", "--percent", "5", "--percent", "5")
    assert result.code == 2
    assert "DUPLICATE_THRESHOLD" in result.stderr
    assert "given twice" in result.stderr
