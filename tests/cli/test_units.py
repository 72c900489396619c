"""`licensing unit history`: a unit's timeline through the installed command, against
live services."""

from __future__ import annotations

import uuid

import pytest

from tests.cli.conftest import Cli

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_a_units_history_says_where_it_is_and_why(cli: Cli) -> None:
    first = cli.office("USD", "--no-plan", "--no-credits")
    second = cli.office("USD", "--no-plan", "--no-credits")
    added = cli.ok(
        "pool", "add-units", first, "connect", "1", "--request-id", "seed-1", "--json"
    ).json()
    unit = added["units"][0]["unit_id"]
    cli.ok("pool", "enable", "USD")
    taken = cli.ok("pool", "acquire", second, "connect", "--json").json()
    assert [u["unit_id"] for u in taken["units"]] == [unit]
    cli.ok("pool", "return", unit, "--request-id", "give-back-1")

    shown = cli.ok("unit", "history", unit, "--json").json()
    assert shown["unit"]["unit_id"] == unit
    assert shown["unit"]["state"] == "UNIT_STATE_POOLED"
    events = shown["events"]
    assert [e["kind"] for e in events] == [
        "UNIT_EVENT_KIND_CREATED",
        "UNIT_EVENT_KIND_POOLED",
        "UNIT_EVENT_KIND_ACQUIRED",
        "UNIT_EVENT_KIND_RETURNED",
    ]
    created, _, acquired, returned = events
    assert (created["office_id"], created["request_id"]) == (first, "seed-1")
    assert acquired["office_id"] == second
    assert acquired["source"] == "ALLOCATION_SOURCE_POOL"
    assert acquired["receipt_id"] == taken["receipt"]["receipt_id"]
    assert (returned["state"], returned["office_id"]) == ("UNIT_STATE_POOLED", second)
    assert returned["request_id"] == "give-back-1"

    table = cli.ok("unit", "history", unit).stdout
    assert "now POOLED" in table
    assert f"taken by office {second} from the pool" in table
    assert f"returned by office {second}" in table
    assert "Where it is: in the pool, claimable from" in table


async def test_a_unit_of_another_company_is_not_found(cli: Cli) -> None:
    office = cli.office("USD", "--no-plan", "--no-credits")
    unit = cli.ok("pool", "add-units", office, "connect", "1", "--json").json()["units"][0]
    stranger = cli.for_company(str(uuid.uuid4()))
    refused = stranger("unit", "history", unit["unit_id"], "--json")
    assert refused.code != 0
    assert refused.error()["code"] == "NOT_FOUND"
    assert refused.error()["reason"] == "UNIT_NOT_FOUND"
    assert stranger("unit", "history", "not-a-uuid").code == 2
