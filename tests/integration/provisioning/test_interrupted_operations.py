"""Operations that take pool units and then write locally, failing at each step: right
after the Reserve, after the local write, after the Commit. Before the commit a failure
leaves the pool exactly as it was (every column of every unit, free-list included); after
it, a retry with the same request_id or the recovery finishes the operation. Never a HELD
unit left, never a unit ASSIGNED to a user or license provisioning does not have.

Pool and provisioning run in this process over real gRPC and PostgreSQL; the failures are
injected by the service's step observer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import grpc
import pytest
import pytest_asyncio

from licensing.pool.v1 import pool_pb2 as pool_pb
from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support.pool import reason_of, rid
from tests.support.provisioning import (
    Platform,
    Tenant,
    new_tenant,
    operation_step,
    pool_units,
    running_provisioning,
    stray_units,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

Action = Callable[[], Awaitable[None]]


async def database_drops() -> None:
    raise ConnectionResetError("connection reset by peer")


class Faults:
    """Runs an action (by default: the database connection drops) the first time an
    operation of a kind reaches a step."""

    def __init__(self) -> None:
        self._armed: dict[tuple[str, str], Action] = {}

    def at(self, kind: str, step: str, action: Action = database_drops) -> None:
        self._armed[(kind, step)] = action

    async def __call__(self, kind: str, step: str) -> None:
        action = self._armed.pop((kind, step), None)
        if action is not None:
            await action()


@pytest.fixture(scope="module")
def faults() -> Faults:
    return Faults()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(database_url: str, faults: Faults) -> AsyncIterator[Platform]:
    # The recovery runs when a test calls it (and once at start-up).
    async with running_provisioning(
        database_url, after_step=faults, recovery_interval_seconds=3600
    ) as running:
        yield running


@pytest.fixture
def tenant(platform: Platform) -> Tenant:
    return new_tenant(platform)


async def recover(tenant: Tenant) -> None:
    await tenant.platform.provisioning.service.operations.recover()


async def failed(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def pooled_connect(tenant: Tenant) -> str:
    """hq has no connect unit of its own; the one of another office rests in the pool,
    claimable (a unit whose place in the claim order a failure must not change)."""
    await tenant.company.office("hq", "USD")
    await tenant.company.office("branch", "USD")
    (unit,) = await tenant.company.add("branch", "connect", 1)
    await tenant.company.enable("USD")
    return unit


def create_user(tenant: Tenant, email: str = "") -> pb.CreateUserRequest:
    return pb.CreateUserRequest(
        request_id=rid(),
        company_id=tenant.company_id,
        office_id=tenant.company.offices["hq"],
        display_name="Ann",
        email=email,
        license_type="connect",
    )


async def users(tenant: Tenant) -> list[pb.User]:
    listed = await tenant.stub.ListUsers(pb.ListUsersRequest(company_id=tenant.company_id))
    return list(listed.users)


# --- CreateUser ------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["reserved", "written"])
async def test_create_user_failing_before_the_commit_leaves_the_pool_as_it_was(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool, step: str
) -> None:
    unit = await pooled_connect(tenant)
    before = await pool_units(db, tenant.company_id)
    assert before[unit]["state"] == "POOLED"
    assert before[unit]["claimable_at"] is not None
    request = create_user(tenant)

    faults.at("create_user", step)
    error = await failed(tenant.stub.CreateUser(request))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(error) == "DATABASE_UNAVAILABLE"
    assert await pool_units(db, tenant.company_id) == before
    assert await stray_units(db, tenant.company_id) == []
    assert await users(tenant) == []
    # Undone: its record is gone with it, the request left nothing.
    assert await operation_step(db, tenant.company_id, request.request_id) is None

    # The retry is a new attempt (new pool request ids), and it completes.
    created = await tenant.stub.CreateUser(request)
    assert created.user.license_unit_id == unit
    after = await pool_units(db, tenant.company_id)
    assert (after[unit]["state"], after[unit]["assignee_id"]) == ("ASSIGNED", created.user.user_id)
    assert await tenant.stub.CreateUser(request) == created
    assert await users(tenant) == [created.user]


@pytest.mark.parametrize("finisher", ["retry", "recovery"])
async def test_create_user_failing_after_the_commit_is_finished(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool, finisher: str
) -> None:
    unit = await pooled_connect(tenant)
    request = create_user(tenant)

    faults.at("create_user", "committed")
    error = await failed(tenant.stub.CreateUser(request))

    # Past the commit the operation cannot be undone exactly, so it is finished: the
    # unit is the user's in both services already.
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(error) == "OPERATION_UNFINISHED"
    held = (await pool_units(db, tenant.company_id))[unit]
    assert held["state"] == "ASSIGNED"
    (user,) = await users(tenant)
    assert (held["assignee_id"], user.license_unit_id) == (user.user_id, unit)
    assert await stray_units(db, tenant.company_id) == []

    if finisher == "recovery":
        await recover(tenant)
        assert await operation_step(db, tenant.company_id, request.request_id) == "DONE"
    created = await tenant.stub.CreateUser(request)
    assert created.user == user
    assert await operation_step(db, tenant.company_id, request.request_id) == "DONE"
    assert await tenant.stub.CreateUser(request) == created
    assert await users(tenant) == [user]


async def test_create_user_refused_by_the_database_after_the_reserve_releases_the_unit(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool
) -> None:
    """A real failure of the local write: another user took the e-mail between the check
    and the insert (a unique violation)."""
    unit = await pooled_connect(tenant)
    before = await pool_units(db, tenant.company_id)
    request = create_user(tenant, email="ann@example.com")

    async def rival_takes_the_email() -> None:
        await db.execute(
            "INSERT INTO provisioning.users (user_id, company_id, office_id, display_name,"
            " email, license_type, license_unit_id, created_at, updated_at)"
            " VALUES ($1, $2, $3, 'Rival', 'ANN@example.com', 'connect', $4, now(), now())",
            uuid.uuid4(),
            uuid.UUID(tenant.company_id),
            uuid.UUID(tenant.company.offices["hq"]),
            uuid.uuid4(),
        )

    faults.at("create_user", "reserved", rival_takes_the_email)
    error = await failed(tenant.stub.CreateUser(request))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(error) == "EMAIL_TAKEN"
    assert await pool_units(db, tenant.company_id) == before
    assert before[unit]["state"] == "POOLED"
    assert [u.display_name for u in await users(tenant)] == ["Rival"]


async def test_a_hold_gone_before_the_commit_undoes_the_local_write(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool
) -> None:
    """The hold is released under the operation after its local write (what its expiry
    does after a long pause): the user is removed again, the pool is as it was."""
    unit = await pooled_connect(tenant)
    before = await pool_units(db, tenant.company_id)
    request = create_user(tenant)

    async def hold_released() -> None:
        holds = await db.fetchval(
            "SELECT holds FROM provisioning.pool_operations"
            " WHERE company_id = $1 AND request_id = $2",
            uuid.UUID(tenant.company_id),
            request.request_id,
        )
        await tenant.platform.pool.Release(
            pool_pb.ReleaseRequest(
                request_id=rid(), company_id=tenant.company_id, hold_id=holds[0]["hold_id"]
            )
        )

    faults.at("create_user", "written", hold_released)
    error = await failed(tenant.stub.CreateUser(request))

    assert error.code() == grpc.StatusCode.ABORTED
    assert reason_of(error) == "HOLD_EXPIRED"
    assert await pool_units(db, tenant.company_id) == before
    assert await users(tenant) == []
    created = await tenant.stub.CreateUser(request)  # a new attempt
    assert created.user.license_unit_id == unit


async def test_a_request_cut_off_mid_way_is_settled_by_the_recovery(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool
) -> None:
    """The caller's deadline passes between two steps: the call is cancelled and its
    driver stops there, as in a crash. The recovery undoes the one that had not written
    locally and finishes the other."""
    unit = await pooled_connect(tenant)
    (spare,) = await tenant.company.add("hq", "connect", 1)
    before = await pool_units(db, tenant.company_id)

    async def stuck() -> None:
        await asyncio.Event().wait()

    undone, finished = create_user(tenant), create_user(tenant)
    for request, step in ((undone, "reserved"), (finished, "written")):
        faults.at("create_user", step, stuck)
        error = await failed(tenant.stub.CreateUser(request, timeout=1))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    held = await pool_units(db, tenant.company_id)
    assert [held[u]["state"] for u in (unit, spare)] == ["HELD", "HELD"]

    # The recovery takes them once the server has cancelled their drivers.
    for _ in range(100):
        await recover(tenant)
        steps = [
            await operation_step(db, tenant.company_id, r.request_id) for r in (undone, finished)
        ]
        if steps == [None, "DONE"]:  # an undone operation leaves no record
            break
        await asyncio.sleep(0.05)
    assert steps == [None, "DONE"]
    (user,) = await users(tenant)
    after = await pool_units(db, tenant.company_id)
    (assigned,) = [u for u in (unit, spare) if after[u]["state"] == "ASSIGNED"]
    assert after[assigned]["assignee_id"] == user.user_id == str(user.user_id)
    (released,) = {unit, spare} - {assigned}
    assert after[released] == before[released]
    assert await stray_units(db, tenant.company_id) == []
    assert (await tenant.stub.CreateUser(finished)).user == user


async def test_concurrent_duplicates_have_one_effect(tenant: Tenant, faults: Faults) -> None:
    unit = await pooled_connect(tenant)
    request = create_user(tenant)

    async def slow() -> None:
        await asyncio.sleep(0.3)  # the others find the operation under way meanwhile

    faults.at("create_user", "reserved", slow)
    answers = await asyncio.gather(*(tenant.stub.CreateUser(request) for _ in range(3)))

    assert answers[0] == answers[1] == answers[2]
    assert answers[0].user.license_unit_id == unit
    assert await users(tenant) == [answers[0].user]


# --- AddAddons (one hold per add-on type) ------------------------------------------------


async def phone_license(tenant: Tenant) -> pb.License:
    await tenant.company.office("hq", "USD")
    for code in ("connect", "phone_system", "device_ip_phone", "call_recording"):
        await tenant.company.add("hq", code, 1)
    return await tenant.assign(await tenant.user("hq", "John"))


def add_addons(tenant: Tenant, held: pb.License) -> pb.AddAddonsRequest:
    return pb.AddAddonsRequest(
        request_id=rid(),
        company_id=tenant.company_id,
        license_id=held.license_id,
        addon_types=["device_ip_phone", "call_recording"],
    )


async def license_now(tenant: Tenant, held: pb.License) -> pb.License:
    response = await tenant.stub.GetLicense(
        pb.GetLicenseRequest(company_id=tenant.company_id, license_id=held.license_id)
    )
    return response.license


@pytest.mark.parametrize("step", ["reserved", "written", "committed"])
async def test_add_addons_failing_at_each_step(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool, step: str
) -> None:
    held = await phone_license(tenant)
    before = await pool_units(db, tenant.company_id)
    request = add_addons(tenant, held)

    faults.at("add_addons", step)
    error = await failed(tenant.stub.AddAddons(request))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    if step == "committed":
        assert reason_of(error) == "OPERATION_UNFINISHED"
        units = await pool_units(db, tenant.company_id)
        addons = (await license_now(tenant, held)).addons
        assert len(addons) == 2
        for addon in addons:
            assert units[addon.addon_id]["state"] == "ASSIGNED"
            assert units[addon.addon_id]["assignee_kind"] == "BASE_LICENSE"
    else:
        assert reason_of(error) == "DATABASE_UNAVAILABLE"
        assert await pool_units(db, tenant.company_id) == before
        assert await license_now(tenant, held) == held
    assert await stray_units(db, tenant.company_id) == []

    added = await tenant.stub.AddAddons(request)
    assert sorted(a.license_type for a in added.license.addons) == [
        "call_recording",
        "device_ip_phone",
    ]
    assert await license_now(tenant, held) == added.license
    assert await tenant.stub.AddAddons(request) == added
    assert await stray_units(db, tenant.company_id) == []


async def test_add_addons_whose_second_hold_is_gone_gives_back_the_first(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool
) -> None:
    """The one case where the pool cannot be left exactly as it was: the first hold was
    committed when the second turned out expired. The committed unit is given back
    (ReturnUnits), the add-ons removed locally, nothing is left assigned or held."""
    held = await phone_license(tenant)
    request = add_addons(tenant, held)

    async def second_hold_released() -> None:
        holds = await db.fetchval(
            "SELECT holds FROM provisioning.pool_operations"
            " WHERE company_id = $1 AND request_id = $2",
            uuid.UUID(tenant.company_id),
            request.request_id,
        )
        await tenant.platform.pool.Release(
            pool_pb.ReleaseRequest(
                request_id=rid(), company_id=tenant.company_id, hold_id=holds[1]["hold_id"]
            )
        )

    faults.at("add_addons", "written", second_hold_released)
    error = await failed(tenant.stub.AddAddons(request))

    assert error.code() == grpc.StatusCode.ABORTED
    assert reason_of(error) == "HOLD_EXPIRED"
    assert await license_now(tenant, held) == held
    assert await stray_units(db, tenant.company_id) == []
    states = await tenant.company.units(license_type="device_ip_phone")
    states += await tenant.company.units(license_type="call_recording")
    assert [u.state for u in states] == [pool_pb.UNIT_STATE_SPARE] * 2


# --- ChangeUserLicense and AssignLicense ---------------------------------------------------


@pytest.mark.parametrize("step", ["reserved", "written", "committed"])
async def test_change_user_license_failing_at_each_step(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool, step: str
) -> None:
    await tenant.company.office("hq", "USD")
    (old,) = await tenant.company.add("hq", "connect", 1)
    (new,) = await tenant.company.add("hq", "support", 1)
    user = await tenant.user("hq", "Carol")
    before = await pool_units(db, tenant.company_id)
    request = pb.ChangeUserLicenseRequest(
        request_id=rid(), company_id=tenant.company_id, user_id=user.user_id,
        license_type="support",
    )  # fmt: skip

    faults.at("change_user_license", step)
    error = await failed(tenant.stub.ChangeUserLicense(request))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    (now,) = await users(tenant)
    units = await pool_units(db, tenant.company_id)
    if step == "committed":
        # The new unit is the user's; the old one is given back by the retry.
        assert (now.license_type, now.license_unit_id) == ("support", new)
        assert units[new]["state"] == units[old]["state"] == "ASSIGNED"
    else:
        assert now == user
        assert units == before
    assert await stray_units(db, tenant.company_id) == []

    changed = await tenant.stub.ChangeUserLicense(request)
    assert (changed.user.license_unit_id, changed.returned_unit_id) == (new, old)
    after = await pool_units(db, tenant.company_id)
    assert (after[new]["state"], after[old]["state"]) == ("ASSIGNED", "SPARE")
    assert await tenant.stub.ChangeUserLicense(request) == changed


@pytest.mark.parametrize("step", ["reserved", "written", "committed"])
async def test_assign_license_failing_at_each_step(
    tenant: Tenant, faults: Faults, db: asyncpg.Pool, step: str
) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "connect", 1)
    (unit,) = await tenant.company.add("hq", "call_group", 1)
    user = await tenant.user("hq", "Dan")
    before = await pool_units(db, tenant.company_id)
    request = pb.AssignLicenseRequest(
        request_id=rid(), company_id=tenant.company_id, user_id=user.user_id,
        license_type="call_group",
    )  # fmt: skip

    faults.at("assign_license", step)
    error = await failed(tenant.stub.AssignLicense(request))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    if step == "committed":
        assert [h.license_id for h in await tenant.licenses()] == [unit]
    else:
        assert await pool_units(db, tenant.company_id) == before
        assert await tenant.licenses() == []
    assert await stray_units(db, tenant.company_id) == []

    assigned = await tenant.stub.AssignLicense(request)
    assert (assigned.license.license_id, assigned.license.user_id) == (unit, user.user_id)
    assert (await pool_units(db, tenant.company_id))[unit]["assignee_id"] == user.user_id
    assert await tenant.stub.AssignLicense(request) == assigned
