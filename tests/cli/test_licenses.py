"""Base licenses, add-ons and extensions (provisioning) through the installed command."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli, needs_provisioning

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow, needs_provisioning]


async def test_assign_extend_add_ons_search_reassign_terminate_unassign(cli: Cli) -> None:
    office = cli.office("USD", "--no-plan", "--name", "Tokyo")
    for code, count in (
        ("connect", 2),
        ("phone_system", 1),
        ("developer", 1),
        ("call_recording", 1),
        ("device_ip_phone", 1),
    ):
        cli.ok("pool", "add-units", office, code, str(count))
    ann = cli.ok("user", "create", office, "Ann", "--json").json()["user"]["user_id"]
    bob = cli.ok("user", "create", office, "Bob", "--json").json()["user"]["user_id"]

    assigned = cli.ok("license", "assign", ann, "phone_system", "--json").json()["license"]
    phone = assigned["license_id"]
    assert (assigned["user_id"], assigned["license_type"]) == (ann, "phone_system")
    cli.ok("license", "assign", bob, "developer")
    extended = cli.ok(
        "extension", "set", phone, "--ext-key", "101", "--number", "+16567891230", "--json"
    ).json()["license"]
    assert (extended["ext_key"], extended["number"]) == ("101", "+16567891230")
    added = cli.ok("addon", "add", phone, "call_recording", "device_ip_phone", "--json").json()
    addons = {a["license_type"]: a["addon_id"] for a in added["license"]["addons"]}
    assert set(addons) == {"call_recording", "device_ip_phone"}

    shown = cli.ok("license", "show", phone).stdout
    for text in (phone, "Ann", "Tokyo", "101", "+16567891230", *addons.values()):
        assert text in shown, text
    assert cli.ok("license", "show", phone, "--json").json()["license"]["ext_key"] == "101"

    by_type = cli.ok("license", "search", "--type", "phone_system", "--json").json()
    assert [h["license_id"] for h in by_type["licenses"]] == [phone]
    by_user = cli.ok("license", "search", "--user", bob, "--json").json()["licenses"]
    assert [h["license_type"] for h in by_user] == ["developer"]
    by_extension = cli.ok("license", "search", "--extension", "10").stdout
    assert "Ann" in by_extension
    assert "Tokyo" in by_extension
    assert "call_recording" in by_extension
    first_page = cli.ok("license", "search", "--page-size", "1", "--json").json()
    assert len(first_page["licenses"]) == 1
    assert first_page["next_page_token"]
    assert "--page-token" in cli.ok("license", "search", "--page-size", "1").stdout
    every = cli.ok("license", "search", "--page-size", "1", "--all", "--json").json()
    assert len(every["licenses"]) == 2
    assert every["next_page_token"] == ""

    moved = cli.ok("license", "reassign", phone, bob, "--json").json()["license"]
    assert moved["user_id"] == bob
    assert moved["ext_key"] == "101"

    in_use = cli("license", "terminate", phone)
    assert in_use.code == 2
    assert "LICENSE_IN_USE" in in_use.stderr
    assert "licensing license unassign" in in_use.stderr
    removed = cli.ok("addon", "remove", phone, "device_ip_phone", "--json").json()
    assert removed["returned_unit_ids"] == [addons["device_ip_phone"]]
    assert [a["license_type"] for a in removed["license"]["addons"]] == ["call_recording"]
    ended = cli.ok("license", "terminate", addons["device_ip_phone"], "--json").json()
    assert ended["subscription"]["state"] == "TERMINATED"
    assert "TERMINATED" in cli.ok("pool", "units", "--state", "terminated").stdout

    unassigned = cli.ok("license", "unassign", phone, "--json").json()
    assert sorted(unassigned["returned_unit_ids"]) == sorted([phone, addons["call_recording"]])
    assert cli.ok("license", "search", "--type", "phone_system", "--json").json()["licenses"] == []
    gone = cli("license", "show", phone, "--json")
    assert gone.code == 2
    assert gone.error()["reason"] == "LICENSE_NOT_FOUND"


async def test_types_of_another_category_are_refused_with_their_own_reason(cli: Cli) -> None:
    office = cli.office("USD", "--no-plan")
    cli.ok("pool", "add-units", office, "connect", "1")
    user = cli.ok("user", "create", office, "Cy", "--json").json()["user"]["user_id"]

    not_user = cli("user", "create", office, "Dee", "--license", "phone_system")
    assert not_user.code == 2
    assert "NOT_A_USER_LICENSE" in not_user.stderr
    assert "not a user license" in not_user.stderr
    assert "no such license type" not in not_user.stderr
    not_base = cli("license", "assign", user, "connect", "--json")
    assert not_base.error()["reason"] == "NOT_A_BASE_LICENSE"
    assert "not a base license" in not_base.error()["reason_text"]
    unknown = cli("license", "assign", user, "platinum", "--json")
    assert unknown.error()["reason"] == "UNKNOWN_LICENSE_TYPE"
