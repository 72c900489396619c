"""Pool operations on the in-memory unit of work and pool: an operation either completes
or leaves the pool exactly as it was, and an undone one leaves no record; a crash at
any step is finished or undone by the recovery."""

from __future__ import annotations

import uuid

import pytest

from libs.common.errors import Aborted, FailedPrecondition, NotFound
from services.provisioning.domain.pool_operation import Step
from services.provisioning.use_cases import operations, users
from tests.unit.provisioning.world import Crash, World


def unit_states(world: World) -> dict[uuid.UUID, str]:
    return {u.unit_id: u.state for u in world.pool.units.values()}


async def test_a_second_type_missing_releases_the_first_hold_and_leaves_no_record() -> None:
    world = World()
    world.office("hq", {"connect": 1, "phone_system": 1, "device_ip_phone": 1})
    user = await world.create_user(world.create_command("hq", "Ann", "r1"))
    held = await world.assign(user.user_id, "phone_system", "r2")
    before = unit_states(world)
    with pytest.raises(FailedPrecondition) as caught:
        await world.add_addons(uuid.UUID(held.license_id), ("device_ip_phone", "team_chat"), "r3")
    assert caught.value.reason == "NO_LICENSE_AVAILABLE"
    assert unit_states(world) == before  # the ip phone unit is spare again
    assert world.pool.pending_holds() == []
    assert (world.company_id, "r3") not in world.state.operations
    assert world.state.addons == {}


async def test_a_local_write_refused_after_the_hold_undoes_the_operation() -> None:
    world = World()
    world.office("hq", {"connect": 1, "phone_system": 1})
    user = await world.create_user(world.create_command("hq", "Ann", "r1"))
    before = unit_states(world)

    def user_deleted_meanwhile() -> None:
        del world.state.users[user.user_id]

    world.steps.at("assign_license", "reserved", user_deleted_meanwhile)
    with pytest.raises(NotFound) as caught:
        await world.assign(user.user_id, "phone_system", "r2")
    assert caught.value.reason == "USER_NOT_FOUND"
    assert unit_states(world) == before
    assert (world.company_id, "r2") not in world.state.operations
    assert world.state.licenses == {}


async def test_a_hold_that_expires_before_its_commit_undoes_what_was_written() -> None:
    world = World()
    world.office("hq", {"connect": 1})

    def long_pause() -> None:
        for hold in world.pool.pending_holds():
            world.pool.expire(hold.hold_id)

    world.steps.at("create_user", "written", long_pause)
    with pytest.raises(Aborted) as caught:
        await world.create_user(world.create_command("hq", "Ann", "r1"))
    assert caught.value.reason == "HOLD_EXPIRED"
    assert world.state.users == {}
    assert world.state.operations == {}
    assert len(world.pool.in_state("SPARE", "connect")) == 1

    # Nothing was done, so the same request is a new attempt, which succeeds.
    user = await world.create_user(world.create_command("hq", "Ann", "r1"))
    assert world.pool.units[user.license_unit_id].state == "ASSIGNED"


async def test_a_crash_after_the_local_write_is_finished_by_the_recovery() -> None:
    world = World()
    world.office("hq", {"connect": 1})
    command = world.create_command("hq", "Ann", "r1")
    world.steps.at("create_user", "written", Crash())
    with pytest.raises(Crash):
        await world.create_user(command)
    (written,) = world.state.operations.values()
    assert written.operation.step is Step.WRITTEN
    assert len(world.pool.pending_holds()) == 1  # the pool has the hold, uncommitted

    world.lease_runs_out()
    assert await world.operations.recover() == 1

    assert written.operation.request_id == "r1"
    (done,) = world.state.operations.values()
    assert done.operation.step is Step.DONE
    (user,) = world.state.users.values()
    assert world.pool.units[user.license_unit_id].state == "ASSIGNED"
    # The caller's retry is answered with the response written before the crash.
    calls = len(world.pool.calls)
    again = await users.create_user(command, world.uow, world.operations)  # type: ignore[arg-type]
    assert again == done.operation.response
    assert len(world.pool.calls) == calls


async def test_a_crash_before_the_local_write_is_undone_by_the_recovery() -> None:
    world = World()
    world.office("hq", {"connect": 1})
    world.steps.at("create_user", "reserved", Crash())
    with pytest.raises(Crash):
        await world.create_user(world.create_command("hq", "Ann", "r1"))
    assert world.pool.in_state("HELD", "connect")

    world.lease_runs_out()
    assert await world.operations.recover() == 1  # settled: undone

    assert world.state.operations == {}
    assert world.state.users == {}
    assert world.pool.pending_holds() == []
    assert len(world.pool.in_state("SPARE", "connect")) == 1


async def test_a_crash_after_the_commit_is_completed_by_the_caller_s_retry() -> None:
    world = World()
    world.office("hq", {"connect": 1})
    command = world.create_command("hq", "Ann", "r1")
    world.steps.at("create_user", "committed", Crash())
    with pytest.raises(Crash):
        await world.create_user(command)
    world.lease_runs_out()

    user = await world.create_user(command)  # the retry takes the lease and finishes

    assert world.pool.units[user.license_unit_id].state == "ASSIGNED"
    (done,) = world.state.operations.values()
    assert done.operation.step is Step.DONE
    assert len(world.pool.units) == 1


async def test_a_retry_while_another_driver_holds_the_lease_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(operations, "_WAIT_SECONDS", 0.0)  # the waits, without the time
    world = World()
    world.office("hq", {"connect": 1})
    command = world.create_command("hq", "Ann", "r1")
    world.steps.at("create_user", "written", Crash())
    with pytest.raises(Crash):
        await world.create_user(command)
    # The crashed driver's lease has not run out (the fake database clock stands still).
    found = world.state.operations[(world.company_id, "r1")]
    found.lease_until = world.state.db_now + 3600
    with pytest.raises(Aborted) as caught:
        await world.create_user(command)
    assert caught.value.reason == "OPERATION_IN_PROGRESS"
