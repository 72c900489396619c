"""Users and CSV mass configuration (provisioning) through the installed command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli, needs_provisioning

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow, needs_provisioning]


async def test_users_take_licenses_and_give_them_back(cli: Cli) -> None:
    first = cli.office("USD", "--no-plan")
    second = cli.office("USD", "--no-plan")
    cli.ok("pool", "add-units", first, "connect", "1")
    cli.ok("pool", "enable", "USD")

    user = cli.ok("user", "create", second, "Ann [bold]Lee", "--email", "ann@example.com", "--json")
    assert user.json()["license_source"] == "LICENSE_SOURCE_POOL"
    created = user.json()["user"]
    assert created["license_type"] == "connect"
    assert created["display_name"] == "Ann [bold]Lee"
    listed = cli.ok("user", "list").stdout
    assert "Ann [bold]Lee" in listed  # data, never rich markup

    refused = cli("user", "change-license", created["user_id"], "sell")
    assert refused.code == 2
    assert "NO_LICENSE_AVAILABLE" in refused.stderr

    deleted = cli.ok("user", "delete", created["user_id"], "--json").json()
    assert deleted["returned_unit_ids"] == [created["license_unit_id"]]
    (went,) = deleted["returned_units"]
    assert (went["state"], went["currency"]) == ("POOLED", "USD")
    pooled = cli.ok("pool", "units", "--state", "pooled", "--json").json()["units"]
    assert [u["unit_id"] for u in pooled] == [created["license_unit_id"]]

    missing = cli("user", "delete", created["user_id"])
    assert missing.code == 2
    assert "NOT_FOUND" in missing.stderr


async def test_import_dry_run_then_apply_with_an_import_id(cli: Cli, tmp_path: Path) -> None:
    office = cli.office("USD", "--no-plan")
    cli.ok("pool", "add-units", office, "connect", "2")
    cli.ok("pool", "add-units", office, "phone_system", "2")
    cli.ok("pool", "add-units", office, "device_ip_phone", "1")
    cli.ok("user", "create", office, "John", "--email", "john@example.com")
    cli.ok("user", "create", office, "Alice")

    template = cli.ok("import", "template", "--header-only").stdout
    assert template.startswith("Ext Key,Number,User")

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "Ext Key,Number,User,Addon license 1\n"
        "101,12,John,bogus_addon\n"
        '102,=HYPERLINK("x"),Nobody,\n'
    )
    checked = cli("import", "check", str(bad), "--office", office)
    assert checked.code == 2
    assert "UNKNOWN_ADDON" in checked.stdout
    assert "MALFORMED_NUMBER" in checked.stdout
    report = cli("import", "check", str(bad), "--office", office, "--json").json()
    rows = {(issue["row"], issue["reason"]) for issue in report["import_job"]["errors"]}
    assert {(2, "UNKNOWN_ADDON"), (2, "MALFORMED_NUMBER"), (3, "MALFORMED_NUMBER")} <= rows

    refused = cli("import", "apply", str(bad), "--office", office, "--import-id", "bad-1")
    assert refused.code == 2
    assert "INVALID_ARGUMENT" in refused.stderr
    assert "content.rows[2]" in refused.stderr

    good = tmp_path / "good.csv"
    good.write_text(
        "Ext Key,Number,User,Addon license 1\n"
        "101,+16567891230,john@example.com,device_ip_phone\n"
        "102,6567891231,Alice,\n"
    )
    dry = cli.ok("import", "check", str(good), "--office", office, "--json").json()["import_job"]
    assert dry["state"] == "IMPORT_STATE_VALIDATED"
    assert dry["error_count"] == 0
    needed = {q["license_type"]: q["needed"] for q in dry["quote"]}
    assert needed == {"phone_system": 2, "device_ip_phone": 1}
    assert cli.ok("pool", "units", "--state", "assigned", "--json").json()["units"] != []

    applied = cli.ok("import", "apply", str(good), "--office", office, "--import-id", "imp-1")
    assert "import id: imp-1" in applied.stdout
    assert "SUCCEEDED" in applied.stdout
    again = cli.ok(
        "import", "apply", str(good), "--office", office, "--import-id", "imp-1", "--json"
    ).json()["import_job"]
    assert again["state"] == "IMPORT_STATE_SUCCEEDED"
    status = cli.ok("import", "status", "imp-1", "--json").json()["import_job"]
    assert status["progress"]["rows_applied"] == 2
    phone_systems = cli.ok(
        "pool", "units", "--type", "phone_system", "--state", "assigned", "--json"
    ).json()["units"]
    assert len(phone_systems) == 2  # applied once, not twice


async def test_user_create_and_delete_say_where_the_license_came_from_and_went(cli: Cli) -> None:
    office = cli.office("USD", "--no-plan", "--name", "Lisbon")
    cli.ok("pool", "add-units", office, "connect", "1")
    made = cli.ok("user", "create", office, "Eve").stdout
    assert "the office's own spare license" in made
    user = cli.ok("user", "list", "--json").json()["users"][0]["user_id"]
    assert "Lisbon (" in cli.ok("user", "list").stdout

    cli.ok("pool", "enable", "USD")
    gone = cli.ok("user", "delete", user).stdout
    assert "returned to the USD pool; other offices can claim it from" in gone
    assert "UTC" in gone
    back = cli.ok("user", "create", office, "Eve").stdout
    assert "own return, taken back within its grace period" in back
    again = cli.ok("user", "list", "--json").json()["users"][0]["user_id"]

    refused = cli("user", "create", office, "Fay")
    assert refused.code == 2
    assert "NO_LICENSE_AVAILABLE" in refused.stderr
    assert "add --purchase to buy it" in refused.stderr
    as_json = cli("user", "create", office, "Fay", "--json").error()
    assert "--purchase" in as_json["reason_text"]
    # A command without a --purchase flag keeps the general advice.
    other = cli("user", "change-license", again, "sell").stderr
    assert "NO_LICENSE_AVAILABLE" in other
    assert "--purchase" not in other


async def test_a_short_file_cannot_be_applied_until_the_units_are_there(
    cli: Cli, tmp_path: Path
) -> None:
    office = cli.office("USD", "--no-plan")
    cli.ok("pool", "add-units", office, "connect", "2")
    cli.ok("pool", "add-units", office, "phone_system", "2")
    cli.ok("user", "create", office, "Gil")
    cli.ok("user", "create", office, "Hal")
    short = tmp_path / "short.csv"
    short.write_text(
        "Ext Key,Number,User,Addon license 1\n201,,Gil,call_recording\n202,,Hal,call_recording\n"
    )
    checked = cli("import", "check", str(short), "--office", office)
    assert checked.code == 2
    assert "needs 2 more call_recording" in checked.stdout
    assert "cannot be applied as it stands" in checked.stdout
    report = cli("import", "check", str(short), "--office", office, "--json").json()
    assert report["import_job"]["error_count"] == 1

    failed = cli("import", "apply", str(short), "--office", office, "--import-id", "short-1")
    assert failed.code == 2
    assert "FAILED" in failed.stdout
    assert "--import-id short-1" in failed.stdout

    cli.ok("pool", "add-units", office, "call_recording", "2")
    assert (
        "This file can be applied"
        in cli.ok("import", "check", str(short), "--office", office).stdout
    )
    applied = cli.ok("import", "apply", str(short), "--office", office, "--import-id", "short-1")
    assert "SUCCEEDED" in applied.stdout
    assert "2/2 rows" in applied.stderr + applied.stdout
    phones = cli.ok("license", "search", "--type", "phone_system", "--json").json()["licenses"]
    assert sorted(h["ext_key"] for h in phones) == ["201", "202"]
