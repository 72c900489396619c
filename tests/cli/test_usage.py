"""Usage credits through the installed command: record, balances, per-office totals."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_usage_draws_allowance_then_the_shared_pool(cli: Cli) -> None:
    primary = cli.office("USD", "--primary", "--allowance", "1000", "--no-plan")
    branch = cli.office("USD", "--allowance", "500", "--no-plan")

    pooling = cli.ok("usage", "pooling", "usd", "--on", "--json").json()
    assert pooling["pooling"]["enabled"] is True
    granted = cli.ok("usage", "grant", "5000", "--currency", "USD", "--json").json()
    assert granted["balance_minor"] == "5000"

    first = cli.ok("usage", "record", branch, "1500", "--json").json()["usage"]
    assert first["split"]["allowance_minor"] == "500"
    assert first["split"]["company_pool_minor"] == "1000"
    assert first["kind"] == "USAGE_KIND_CALLING"

    words = cli.ok("usage", "record", primary, "250", "--kind", "messaging").stdout
    assert "$2.50" in words
    assert "allowance $2.50" in words

    balances = cli.ok("usage", "balances", "--json").json()
    assert balances["company_pools"] == [
        {"balance_minor": "4000", "currency": "USD", "pooling_enabled": True}
    ]
    left = {o["office_id"]: o["allowance_remaining_minor"] for o in balances["offices"]}
    assert left == {primary: "750", branch: "0"}
    table = cli.ok("usage", "balances").stdout
    assert "$40.00" in table
    assert branch in table

    totals = cli.ok("usage", "totals", "--json").json()
    per_office = {t["office_id"]: int(t["amount_minor"]) for t in totals["office_totals"]}
    assert per_office == {primary: 250, branch: 1500}
    assert [int(t["amount_minor"]) for t in totals["company_totals"]] == [1750]
    assert "$17.50" in cli.ok("usage", "totals").stdout

    listed = cli.ok("usage", "list", "--office", branch, "--json").json()
    assert [u["usage_id"] for u in listed["usage"]] == [first["usage_id"]]


async def test_recording_the_same_usage_twice_charges_once(cli: Cli) -> None:
    office = cli.office("JPY", "--allowance", "1000", "--no-plan")
    once = cli.ok("usage", "record", office, "300", "--request-id", "cdr-1", "--json").json()
    twice = cli.ok("usage", "record", office, "300", "--request-id", "cdr-1", "--json").json()
    assert once == twice
    balances = cli.ok("usage", "balances", "--currency", "JPY", "--json").json()
    assert balances["offices"][0]["allowance_remaining_minor"] == "700"
    assert "¥700" in cli.ok("usage", "balances").stdout


async def test_overage_refused_by_policy_is_explained(cli: Cli) -> None:
    office = cli.office("CAD", "--allowance", "100", "--reject-overage", "--no-plan")
    result = cli("usage", "record", office, "101")
    assert result.code == 2
    assert "INSUFFICIENT_CREDITS" in result.stderr
    assert "reject overage" in result.stderr
