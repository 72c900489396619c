"""Errors in words, with the reason from the server and the right exit code."""

from __future__ import annotations

import uuid

import pytest

from tests.cli.conftest import Cli, Platform, free_address

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_no_license_available_is_explained(cli: Cli) -> None:
    office = cli.office("USD", "--no-plan")
    result = cli("pool", "acquire", office, "connect")
    assert result.code == 2
    assert result.stdout == ""
    assert "pool" in result.stderr
    assert "FAILED_PRECONDITION" in result.stderr
    assert "NO_LICENSE_AVAILABLE" in result.stderr
    assert "no license is available" in result.stderr
    assert "1 of 1 connect license(s) missing" in result.stderr  # the server's message
    assert "shortfall: 1" in result.stderr

    as_json = cli("pool", "acquire", office, "connect", "--json")
    assert as_json.code == 2
    error = as_json.error()
    assert error["code"] == "FAILED_PRECONDITION"
    assert error["reason"] == "NO_LICENSE_AVAILABLE"
    assert error["service"] == "pool"
    assert error["method"] == "Acquire"
    assert error["metadata"] == {"license_type": "connect", "shortfall": "1"}
    assert error["details"][0]["type"] == "licensing.pool.v1.Receipt"
    assert error["request_id"]


async def test_unknown_things_and_bad_input_exit_2(cli: Cli) -> None:
    missing = cli("pool", "acquire", str(uuid.uuid4()), "connect")
    assert missing.code == 2
    assert "NOT_FOUND" in missing.stderr
    assert "OFFICE_NOT_FOUND" in missing.stderr

    bad = cli("office", "create", "--currency", "XYZ", "--no-plan", "--no-credits")
    assert bad.code == 2
    assert "INVALID_ARGUMENT" in bad.stderr

    not_uuid = cli("pool", "show", "USD", "--company", "not-a-company")
    assert not_uuid.code == 2
    assert "INVALID_ARGUMENT" in not_uuid.stderr


async def test_enabling_a_pool_is_refused_while_a_legacy_plan_is_active(cli: Cli) -> None:
    cli.office("GBP", "--legacy")
    result = cli("pool", "enable", "GBP")
    assert result.code == 2
    assert "LEGACY_PLAN_IN_CURRENCY" in result.stderr
    assert "legacy plan" in result.stderr


async def test_a_service_that_is_down_is_named(platform: Platform) -> None:
    nowhere = free_address()
    cli = Cli({**platform.env, "LICENSING_POOL": nowhere, "LICENSING_COMPANY": str(uuid.uuid4())})
    result = cli("pool", "show", "USD")
    assert result.code == 1
    assert f"could not reach the pool service at {nowhere}" in result.stderr
    assert "make run" in result.stderr
    assert "Traceback" not in result.stderr

    as_json = cli("pool", "show", "USD", "--json")
    assert as_json.code == 1
    assert as_json.error()["code"] == "UNAVAILABLE"
    assert as_json.error()["service"] == "pool"

    # The --pool option wins over the environment.
    flagged = cli("--pool", free_address(), "usage", "balances")
    assert flagged.code == 0, flagged.stderr  # credits is up; the pool is not needed

    down = cli("--credits", nowhere, "usage", "balances")
    assert down.code == 1
    assert "could not reach the credits service" in down.stderr
    assert "--credits / LICENSING_CREDITS" in down.stderr


async def test_services_lists_what_answers(platform: Platform) -> None:
    cli = Cli(platform.env)
    result = cli("services", "--json")
    found = result.json()["services"]
    for name in platform.addresses:
        assert found[name]["health"] == "SERVING"
        assert found[name]["ok"] is True
        assert found[name]["expected_service"] in found[name]["services"]
        assert "grpc.health.v1.Health" in found[name]["services"]
    assert result.code == (0 if len(platform.addresses) == 4 else 1)

    table = cli("services").stdout
    assert "licensing.pool.v1.PoolService" in table
    assert "SERVING" in table

    nowhere = Cli({**platform.env, "LICENSING_POOL": free_address()})
    down = nowhere("services", "--json")
    assert down.code == 1
    assert down.json()["services"]["pool"]["health"] == "UNREACHABLE"
    assert "unreachable" in nowhere("services").stdout
