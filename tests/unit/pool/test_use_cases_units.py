"""Unit use cases on the in-memory pool (docs/product.md, "License units and their
states", "Pools", "Removals and restores"): returns, removals, terminations, who pays
for what in a snapshot, and replays."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from functools import partial

import pytest

from libs.common import call_context
from libs.common.errors import DomainError
from libs.common.handlers import once
from licensing.pool.v1 import pool_pb2 as pb
from services.pool.api import convert
from services.pool.domain.model import Assignee, UnitState
from services.pool.use_cases import units
from tests.unit.pool.world import GRACE, World


@pytest.fixture
async def world() -> World:
    w = World()
    await w.office("a")
    await w.office("b")
    return w


async def refused(call: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def terminate(world: World, *unit_ids: object) -> object:
    command = units.TerminateUnits(world.company_id, tuple(unit_ids))  # type: ignore[arg-type]
    return world.run(lambda tx: units.terminate_units(command, tx))


async def test_a_return_goes_to_the_pool_with_the_grace_period(world: World) -> None:
    await world.enable()
    assigned = await world.acquire_spare("a", 1)
    spare = await world.add("a", 1)
    now = world.uow.clock.now()
    returned = await world.give_back([assigned[0].unit_id, spare[0].unit_id])
    for unit in returned:
        assert (unit.state, unit.returned_at, unit.claimable_at, unit.office_id) == (
            UnitState.POOLED,
            now,
            now + GRACE,
            world.offices["a"],  # the office that returned it
        )
        assert unit.assignee is None


async def test_without_a_pool_a_return_is_spare_in_its_office(world: World) -> None:
    assigned = await world.acquire_spare("a", 1, "connect")
    usage = await world.acquire_spare("a", 1, "agentic_ai")
    await world.enable()  # usage types never pool, even now
    (unit,) = await world.give_back([usage[0].unit_id])
    assert (unit.state, unit.claimable_at) == (UnitState.SPARE, None)
    other = await world.give_back([assigned[0].unit_id])
    assert other[0].state is UnitState.POOLED


async def test_returns_of_another_currency_follow_their_own_pool(world: World) -> None:
    await world.office("e", "EUR")
    await world.enable("USD")
    dollars = await world.acquire_spare("a", 1)
    euros = await world.acquire_spare("e", 1)
    returned = await world.give_back([dollars[0].unit_id, euros[0].unit_id])
    states = {u.currency: u.state for u in returned}
    assert states == {"USD": UnitState.POOLED, "EUR": UnitState.SPARE}
    assert sorted(world.uow.state.locks[-2:]) == sorted(
        [(world.company_id, "USD"), (world.company_id, "EUR")]
    )


async def test_only_assigned_or_spare_units_return(world: World) -> None:
    await world.enable()
    assigned = await world.acquire_spare("a", 1)
    (pooled,) = await world.give_back([assigned[0].unit_id])
    fresh = await world.add("a", 1)
    error = await refused(world.give_back([fresh[0].unit_id, pooled.unit_id]))
    assert error.reason == "UNIT_NOT_RETURNABLE"
    assert error.metadata == {"unit_id": str(pooled.unit_id), "state": "POOLED"}
    assert world.unit(fresh[0].unit_id).state is UnitState.SPARE  # the call changed nothing


async def test_units_of_another_company_are_not_found(world: World) -> None:
    other = World()
    await other.office("x")
    theirs = await other.add("x", 1)
    world.uow.state.units.update(other.uow.state.units)
    error = await refused(world.give_back([theirs[0].unit_id]))
    assert error.reason == "UNIT_NOT_FOUND"


async def test_units_in_use_refuse_the_whole_termination(world: World) -> None:
    assigned = await world.acquire_spare("a", 1)
    await world.add("a", 1)
    held = await world.reserve("a", 1, ttl=timedelta(minutes=5))
    assert held.hold is not None
    spare = await world.add("a", 1)
    for busy, state in ((assigned[0].unit_id, "ASSIGNED"), (held.hold.unit_ids[0], "HELD")):
        error = await refused(terminate(world, spare[0].unit_id, busy))
        assert (error.reason, error.metadata["state"]) == ("UNIT_IN_USE", state)
    assert world.unit(spare[0].unit_id).state is UnitState.SPARE  # nothing ended


async def test_free_units_terminate_and_terminated_ones_stay(world: World) -> None:
    await world.enable()
    assigned = await world.acquire_spare("a", 1)
    (pooled,) = await world.give_back([assigned[0].unit_id])
    await world.add("a", 2)
    await world.mark_for_removal("a", 1)
    spare = next(u for u in world.units() if u.state is UnitState.SPARE)
    scheduled = next(u for u in world.units() if u.state is UnitState.REMOVAL_SCHEDULED)
    ids = (pooled.unit_id, spare.unit_id, scheduled.unit_id)
    ended = await terminate(world, *ids)
    assert {u.state for u in ended} == {UnitState.TERMINATED}  # type: ignore[attr-defined]
    first = {u.unit_id: u.updated_at for u in world.units()}
    world.advance(timedelta(seconds=1))
    again = await terminate(world, *ids)
    assert {u.state for u in again} == {UnitState.TERMINATED}  # type: ignore[attr-defined]
    assert {u.unit_id: u.updated_at for u in world.units()} == first


async def test_removal_takes_exactly_the_quantity_and_restore_up_to_it(world: World) -> None:
    await world.add("a", 2)
    error = await refused(world.mark_for_removal("a", 3))
    assert error.reason == "NOT_ENOUGH_SPARE"
    assert {u.state for u in world.units()} == {UnitState.SPARE}
    await world.mark_for_removal("a", 2)
    command = units.OfficeUnits(world.company_id, world.offices["a"], "connect", 5)
    restored = await world.run(lambda tx: units.restore_from_removal(command, tx))
    assert len(restored) == 2
    assert {u.state for u in world.units()} == {UnitState.SPARE}


async def test_only_assigned_units_are_reassigned(world: World) -> None:
    assigned = await world.acquire_spare("a", 1)
    spare = await world.add("a", 1)
    someone = Assignee("USER", "u9")
    command = units.ReassignUnits(world.company_id, ((spare[0].unit_id, someone),))
    error = await refused(world.run(lambda tx: units.reassign_units(command, tx)))
    assert error.reason == "UNIT_NOT_ASSIGNED"
    command = units.ReassignUnits(world.company_id, ((assigned[0].unit_id, someone),))
    (unit,) = await world.run(lambda tx: units.reassign_units(command, tx))
    assert (unit.assignee, unit.office_id) == (someone, world.offices["a"])


async def test_a_snapshot_puts_each_unit_on_the_line_of_who_pays(world: World) -> None:
    await world.enable()
    returned = await world.acquire_spare("b", 2)
    await world.give_back([u.unit_id for u in returned])
    world.advance(GRACE)
    await world.add("a", 3)  # spare, after enabling: a's
    await world.acquire("a", 1)  # a's own spare, assigned
    await world.mark_for_removal("a", 1)
    from_spare = await world.reserve("a", 1, ttl=timedelta(minutes=5))  # a's last spare
    from_pool = await world.reserve("a", 1, ttl=timedelta(minutes=5))  # one of the pool's
    assert from_spare.hold is not None
    assert from_pool.hold is not None
    ended = await world.add("a", 1)
    await terminate(world, ended[0].unit_id)

    snapshot = await units.snapshot(world.uow, world.company_id, None)

    assert snapshot.taken_at == world.uow.clock.now()
    (line,) = snapshot.office_lines
    assert (line.office_id, line.license_type) == (world.offices["a"], "connect")
    assert line.counts == {
        UnitState.ASSIGNED: 1,
        UnitState.REMOVAL_SCHEDULED: 1,
        UnitState.HELD: 1,  # held from a's spare: still a's
    }
    (pool_line,) = snapshot.pool_lines
    assert (pool_line.currency, pool_line.pooled, pool_line.held) == ("USD", 1, 1)
    assert snapshot.live_units == 5  # the terminated unit is nobody's


@pytest.fixture
def serving_returns() -> Iterator[None]:
    call = call_context.begin("/licensing.pool.v1.PoolService/ReturnUnits", None)
    yield
    call_context.end(call)


async def test_a_replayed_return_answers_the_first_response(
    world: World, serving_returns: None
) -> None:
    await world.enable()
    assigned = await world.acquire_spare("a", 1)
    request = pb.ReturnUnitsRequest(
        request_id="r1", company_id=str(world.company_id), unit_ids=[str(assigned[0].unit_id)]
    )
    command = units.ReturnUnits(world.company_id, (assigned[0].unit_id,), GRACE)
    effect = partial(units.return_units, command)
    first = await once(world.uow, request, world.company_id, effect, convert.returned)
    world.advance(timedelta(minutes=1))
    again = await once(world.uow, request, world.company_id, effect, convert.returned)
    assert again == first
    (unit,) = world.units()
    assert unit.returned_at == world.uow.clock.now() - timedelta(minutes=1)  # returned once
    other = pb.ReturnUnitsRequest(request_id="r1", company_id=str(world.company_id))
    error = await refused(once(world.uow, other, world.company_id, effect, convert.returned))
    assert error.reason == "REQUEST_ID_REUSED"
