"""Provisioning as its own process, killed right after each step of an operation that
takes pool units (PROVISIONING_CRASH_AFTER_STEP: the process exits there, as in a crash),
then started again. Its recovery undoes an operation that had not written locally (the
pool exactly as it was) and finishes one that had; a retry with the same request_id then
gets the final answer. Nothing is left HELD, nothing ASSIGNED to a user or license
provisioning does not have.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import asyncpg
import grpc
import pytest
import pytest_asyncio

from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support.pool import rid
from tests.support.provisioning import (
    Processes,
    Tenant,
    new_tenant,
    operation_step,
    pool_units,
    spawned_platform,
    stray_units,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

# The step each operation is settled at; None: undone (an undone operation leaves no record).
STEPS = [("reserved", None), ("written", "DONE"), ("committed", "DONE")]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def processes(database_url: str) -> AsyncIterator[Processes]:
    # A short lease: a killed driver's operations are recovered about a second later.
    async with spawned_platform(
        database_url, operation_lease_seconds="1", recovery_interval_seconds="0.2"
    ) as running:
        yield running


async def restart(processes: Processes, crash_after: str = "") -> None:
    """A new provisioning process, crashing after `crash_after` when given."""
    assert processes.provisioning is not None
    await processes.provisioning.stop()
    processes.provisioning_env["crash_after_step"] = crash_after
    await processes.start_provisioning()


async def killed(processes: Processes, call: Awaitable[object]) -> None:
    """The call is cut off by the process exiting at its configured step."""
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    assert processes.provisioning is not None
    assert await processes.provisioning.process.wait() == 70


async def settled(db: asyncpg.Pool, company_id: str, request_id: str) -> str | None:
    """The operation's step once the recovery settled it (None: undone)."""
    step = None
    for _ in range(300):
        step = await operation_step(db, company_id, request_id)
        if step in ("DONE", None):
            break
        await asyncio.sleep(0.1)
    return step


async def unfinished(db: asyncpg.Pool, company_id: str, request_id: str) -> bool:
    """The killed driver left its operation recorded, unfinished, for the recovery."""
    return await operation_step(db, company_id, request_id) in ("RESERVING", "WRITTEN")


async def users(tenant: Tenant) -> list[pb.User]:
    listed = await tenant.stub.ListUsers(pb.ListUsersRequest(company_id=tenant.company_id))
    return list(listed.users)


@pytest.mark.parametrize(("step", "outcome"), STEPS)
async def test_create_user_killed_after_each_step(
    processes: Processes, db: asyncpg.Pool, step: str, outcome: str
) -> None:
    await restart(processes, crash_after=f"create_user:{step}")
    tenant = new_tenant(processes.platform)
    await tenant.company.office("hq", "USD")
    await tenant.company.office("branch", "USD")
    (unit,) = await tenant.company.add("branch", "connect", 1)
    await tenant.company.enable("USD")  # the unit rests in the pool, claimable
    before = await pool_units(db, tenant.company_id)
    request = pb.CreateUserRequest(
        request_id=rid(),
        company_id=tenant.company_id,
        office_id=tenant.company.offices["hq"],
        display_name="Ann",
        license_type="connect",
    )

    await killed(processes, tenant.stub.CreateUser(request))
    assert await unfinished(db, tenant.company_id, request.request_id)
    await restart(processes)

    assert await settled(db, tenant.company_id, request.request_id) == outcome
    assert await stray_units(db, tenant.company_id) == []
    if outcome is None:
        assert await pool_units(db, tenant.company_id) == before
        assert await users(tenant) == []
    else:
        (user,) = await users(tenant)
        assert user.license_unit_id == unit

    created = await tenant.stub.CreateUser(request)
    assert created.user.license_unit_id == unit
    after = await pool_units(db, tenant.company_id)
    assert (after[unit]["state"], after[unit]["assignee_id"]) == ("ASSIGNED", created.user.user_id)
    assert await users(tenant) == [created.user]
    assert await tenant.stub.CreateUser(request) == created


@pytest.mark.parametrize(("step", "outcome"), STEPS)
async def test_add_addons_killed_after_each_step(
    processes: Processes, db: asyncpg.Pool, step: str, outcome: str
) -> None:
    await restart(processes, crash_after=f"add_addons:{step}")
    tenant = new_tenant(processes.platform)
    await tenant.company.office("hq", "USD")
    for code in ("connect", "phone_system", "device_ip_phone", "call_recording"):
        await tenant.company.add("hq", code, 1)
    held = await tenant.assign(await tenant.user("hq", "John"))
    before = await pool_units(db, tenant.company_id)
    request = pb.AddAddonsRequest(
        request_id=rid(),
        company_id=tenant.company_id,
        license_id=held.license_id,
        addon_types=["device_ip_phone", "call_recording"],
    )

    await killed(processes, tenant.stub.AddAddons(request))
    assert await unfinished(db, tenant.company_id, request.request_id)
    await restart(processes)

    assert await settled(db, tenant.company_id, request.request_id) == outcome
    assert await stray_units(db, tenant.company_id) == []
    (now,) = await tenant.licenses()
    if outcome is None:
        assert await pool_units(db, tenant.company_id) == before
        assert now == held
    else:
        assert len(now.addons) == 2

    added = await tenant.stub.AddAddons(request)
    assert sorted(a.license_type for a in added.license.addons) == [
        "call_recording",
        "device_ip_phone",
    ]
    after = await pool_units(db, tenant.company_id)
    for addon in added.license.addons:
        assert after[addon.addon_id]["state"] == "ASSIGNED"
        assert after[addon.addon_id]["assignee_id"] == held.license_id
    assert await tenant.licenses() == [added.license]
    assert await tenant.stub.AddAddons(request) == added
