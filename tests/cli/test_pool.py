"""Offices, pools and units through the installed command, against live services."""

from __future__ import annotations

import pytest

from tests.cli.conftest import HAS_BILLING, Cli

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_office_create_registers_the_office_everywhere(cli: Cli) -> None:
    created = cli.ok(
        "office",
        "create",
        "--currency",
        "usd",
        "--primary",
        "--price",
        "connect=1500",
        "--allowance",
        "2500",
        "--json",
    ).json()
    office = created["office"]
    assert office["currency"] == "USD"
    assert office["plan_kind"] == "PLAN_KIND_BUNDLE"
    assert office["primary"] is True
    assert created["account"]["allowance_minor"] == "2500"
    if HAS_BILLING:
        assert created["plan"]["prices"] == [
            {
                "license_type": "connect",
                "unit_price": {"amount_minor": "1500", "currency_code": "USD"},
            }
        ]
    listed = cli.ok("office", "list", "--json").json()["offices"]
    assert [o["office_id"] for o in listed] == [office["office_id"]]

    table = cli.ok("office", "list").stdout
    assert office["office_id"] in table
    assert "BUNDLE" in table


async def test_office_create_without_billing_still_registers_in_pool(cli: Cli) -> None:
    created = cli.ok(
        "office", "create", "--currency", "JPY", "--no-plan", "--no-credits", "--json"
    ).json()
    assert "plan" not in created
    assert "account" not in created
    shown = cli.ok("company", "show", "--json").json()
    assert [o["currency"] for o in shown["offices"]] == ["JPY"]
    assert shown["pools"][0]["pool"]["enabled"] is False


async def test_enable_a_pool_then_list_its_units_as_json(cli: Cli) -> None:
    first = cli.office("USD", "--name", "Lisbon")
    second = cli.office("USD")
    cli.ok("pool", "add-units", first, "connect", "3")
    cli.ok("pool", "add-units", second, "agentic_ai", "1")  # never poolable: stays spare

    preview = cli.ok("pool", "enable", "USD", "--dry-run", "--json").json()
    assert preview["can_enable"] is True
    assert preview["entering_units"] == 3
    assert preview["entries"] == [{"license_type": "connect", "office_id": first, "quantity": 3}]
    assert sorted(preview["office_ids"]) == sorted([first, second])
    assert preview["in_parity"] is True
    preview_table = cli.ok("pool", "enable", "USD", "--dry-run").stdout
    assert "would move" in preview_table
    assert f"Lisbon ({first[:8]})" in preview_table  # offices by name; unnamed by id

    enabled = cli.ok("pool", "enable", "USD", "--json").json()
    assert enabled["pool"]["enabled"] is True
    assert enabled["moved_total"] == 3
    assert sorted(enabled["office_ids"]) == sorted([first, second])
    assert enabled["moved"] == [{"license_type": "connect", "office_id": first, "quantity": 3}]

    shown = cli.ok("pool", "show", "USD", "--json").json()
    assert shown["contents"] == [{"claimable": 3, "in_grace": 0, "license_type": "connect"}]
    assert shown["counts"] == {
        "assigned": 0,
        "spare": 1,
        "pooled": 3,
        "held": 0,
        "removal_scheduled": 0,
        "live": 4,
    }
    assert "enabled" in cli.ok("pool", "show", "USD").stdout

    pooled = cli.ok("pool", "units", "--state", "pooled", "--json").json()
    assert len(pooled["units"]) == 3
    assert {u["state"] for u in pooled["units"]} == {"UNIT_STATE_POOLED"}
    assert {u["license_type"] for u in pooled["units"]} == {"connect"}
    assert pooled["next_page_token"] == ""
    # Stable keys: every field is there, even when empty.
    assert {"unit_id", "office_id", "hold_id", "held_from_state", "claimable_at"} <= set(
        pooled["units"][0]
    )

    page = cli.ok("pool", "units", "--state", "POOLED", "--page-size", "2", "--json").json()
    assert len(page["units"]) == 2
    assert page["next_page_token"]
    rest = cli.ok(
        "pool",
        "units",
        "--state",
        "pooled",
        "--page-size",
        "2",
        "--page-token",
        page["next_page_token"],
        "--json",
    ).json()
    assert len(rest["units"]) == 1
    assert rest["next_page_token"] == ""
    every = cli.ok("pool", "units", "--page-size", "1", "--all", "--json").json()
    assert len(every["units"]) == 4
    assert {u["unit_id"] for u in page["units"] + rest["units"]} == {
        u["unit_id"] for u in pooled["units"]
    }

    spare = cli.ok("pool", "units", "--office", second, "--type", "agentic_ai", "--json").json()
    assert [u["state"] for u in spare["units"]] == ["UNIT_STATE_SPARE"]
    listed = cli.ok("pool", "units").stdout
    assert f"Lisbon ({first[:8]})" in listed
    assert second in listed

    # The second office claims the pooled units: own spare first, then the pool.
    taken = cli.ok("pool", "acquire", second, "connect", "-n", "2", "--json").json()
    assert [(t["source"], t["quantity"]) for t in taken["receipt"]["taken"]] == [
        ("ALLOCATION_SOURCE_POOL", 2)
    ]
    assert "POOL" in cli.ok("pool", "acquire", second, "connect").stdout


async def test_a_request_id_makes_a_mutation_idempotent(cli: Cli) -> None:
    office = cli.office("EUR", "--no-plan")
    first = cli.ok("pool", "add-units", office, "connect", "2", "--request-id", "seed-1", "--json")
    again = cli.ok("pool", "add-units", office, "connect", "2", "--request-id", "seed-1", "--json")
    assert first.json() == again.json()
    assert len(cli.ok("pool", "units", "--json").json()["units"]) == 2

    reused = cli("pool", "add-units", office, "connect", "5", "--request-id", "seed-1")
    assert reused.code == 2
    assert "REQUEST_ID_REUSED" in reused.stderr
    assert "already used for a different request" in reused.stderr


async def test_office_create_with_a_request_id_can_be_rerun(cli: Cli) -> None:
    args = ("office", "create", "--currency", "CAD", "--request-id", "office-1", "--json")
    first = cli.ok(*args).json()
    again = cli.ok(*args).json()
    assert again == first
    assert len(cli.ok("office", "list", "--json").json()["offices"]) == 1
