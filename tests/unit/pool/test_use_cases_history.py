"""Unit history and as-of snapshots on the in-memory pool (docs/product.md, "Unit
history and as-of snapshots"): every change of a unit is an event that says where the
unit is and why; a snapshot as of a past instant is the live one of that instant."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from libs.common.errors import DomainError
from libs.common.reasons import Reason
from services.pool.domain.history import Cause, EventKind, EventQuery, UnitEvent
from services.pool.domain.model import Assignee, Source, UnitState
from services.pool.use_cases import history, units
from tests.unit.pool.world import World

RETENTION = timedelta(days=30)


@pytest.fixture
async def world() -> World:
    w = World()
    await w.office("a")
    await w.office("b")
    return w


async def events(world: World, unit_id: uuid.UUID | None = None, **how: object) -> list[UnitEvent]:
    query = EventQuery(world.company_id, unit_id, None, None, None, None, 1000)
    for name, value in how.items():
        object.__setattr__(query, name, value)
    found = await history.list_events(world.uow, query)
    return found


async def test_a_units_journey_says_where_it_is_and_why(world: World) -> None:
    command = units.OfficeUnits(
        world.company_id, world.offices["a"], "connect", 1, Cause("buy-1", "purchase p1")
    )
    (unit,) = await world.run(lambda tx: units.add_units(command, tx))
    await world.enable()  # the spare unit enters the pool
    user = Assignee("USER", "u1")
    taken = await world.acquire("b", assignees=(user,), request_id="acq-1")
    await world.give_back([unit.unit_id])
    world.advance(timedelta(hours=1))
    reserved = await world.reserve("a", request_id="res-1")
    assert reserved.hold is not None
    await world.commit(reserved.hold)

    journey = await events(world, unit.unit_id)
    assert [e.kind for e in journey] == [
        EventKind.CREATED,
        EventKind.POOLED,
        EventKind.ACQUIRED,
        EventKind.RETURNED,
        EventKind.RESERVED,
        EventKind.COMMITTED,
    ]
    created, pooled, acquired, returned, held, committed = journey
    assert (created.request_id, created.origin, created.state) == (
        "buy-1",
        "purchase p1",
        UnitState.SPARE,
    )
    assert pooled.state is UnitState.POOLED
    assert (acquired.office_id, acquired.source, acquired.assignee) == (
        world.offices["b"],
        Source.POOL,
        user,
    )
    assert acquired.receipt_id == taken.receipt.receipt_id
    assert acquired.request_id == "acq-1"
    assert (returned.state, returned.office_id) == (UnitState.POOLED, world.offices["b"])
    assert returned.claimable_at == returned.occurred_at + timedelta(minutes=30)
    assert (held.state, held.held_from, held.hold_id) == (
        UnitState.HELD,
        UnitState.POOLED,
        reserved.hold.hold_id,
    )
    assert (held.for_office_id, held.request_id) == (world.offices["a"], "res-1")
    assert (committed.state, committed.office_id, committed.hold_id) == (
        UnitState.SPARE,
        world.offices["a"],
        reserved.hold.hold_id,
    )
    assert committed.receipt_id == reserved.receipt.receipt_id


async def test_releases_expiry_removals_and_terminations_are_events(world: World) -> None:
    (unit,) = await world.add("a", 1)
    reserved = await world.reserve("a", ttl=timedelta(minutes=1))
    assert reserved.hold is not None
    await world.release(reserved.hold)
    again = await world.reserve("a", ttl=timedelta(minutes=1))
    assert again.hold is not None
    world.advance(timedelta(minutes=2))
    assert await world.expiry.expire_due() == 1
    await world.mark_for_removal("a", 1)
    restore = units.OfficeUnits(world.company_id, world.offices["a"], "connect", 1)
    await world.run(lambda tx: units.restore_from_removal(restore, tx))
    end = units.TerminateUnits(world.company_id, (unit.unit_id,), Cause("end-1"))
    await world.run(lambda tx: units.terminate_units(end, tx))

    journey = await events(world, unit.unit_id)
    assert [(e.kind, e.state) for e in journey] == [
        (EventKind.CREATED, UnitState.SPARE),
        (EventKind.RESERVED, UnitState.HELD),
        (EventKind.RELEASED, UnitState.SPARE),
        (EventKind.RESERVED, UnitState.HELD),
        (EventKind.EXPIRED, UnitState.SPARE),
        (EventKind.REMOVAL_SCHEDULED, UnitState.REMOVAL_SCHEDULED),
        (EventKind.RESTORED, UnitState.SPARE),
        (EventKind.TERMINATED, UnitState.TERMINATED),
    ]
    assert journey[2].hold_id == reserved.hold.hold_id  # the hold it left
    assert journey[4].hold_id == again.hold.hold_id
    assert journey[-1].request_id == "end-1"


async def test_a_company_sees_only_its_own_units_and_offices(world: World) -> None:
    (unit,) = await world.add("a", 1)
    other = World(uow=world.uow)
    await other.office("x")
    refused = await _refused(events(other, unit.unit_id))
    assert refused.reason == Reason.UNIT_NOT_FOUND.name
    refused = await _refused(events(other, office_id=world.offices["a"]))
    assert refused.reason == Reason.OFFICE_NOT_FOUND.name
    assert await events(other) == []


async def test_events_of_an_office_and_a_time_range(world: World) -> None:
    await world.add("a", 1)
    world.advance(timedelta(minutes=1))
    start = world.uow.clock.now()
    await world.add("b", 2)
    world.advance(timedelta(minutes=1))
    await world.add("a", 1)
    in_b = await events(world, office_id=world.offices["b"])
    assert [e.office_id for e in in_b] == [world.offices["b"]] * 2
    window = await events(world, start=start, end=start + timedelta(seconds=30))
    assert len(window) == 2
    assert all(e.occurred_at == start for e in window)


async def test_an_as_of_snapshot_is_the_live_one_of_that_instant(world: World) -> None:
    await world.add("a", 3)
    await world.enable()
    await world.acquire("b", 1)
    live = await units.snapshot(world.uow, world.company_id, None)
    world.advance(timedelta(minutes=5))
    await world.acquire("a", 2)
    reserved = await world.reserve("b", ttl=timedelta(minutes=1), allow_partial=True)
    assert reserved.hold is None  # nothing left
    await world.add("b", 1)

    then = await history.snapshot_as_of(world.uow, world.company_id, None, live.taken_at, RETENTION)
    assert then == live
    now = await units.snapshot(world.uow, world.company_id, None)
    assert (
        await history.snapshot_as_of(world.uow, world.company_id, None, now.taken_at, RETENTION)
        == now
    )


async def test_an_as_of_snapshot_reaches_back_only_as_far_as_history(world: World) -> None:
    now = world.uow.clock.now()

    async def as_of(delta: timedelta) -> object:
        return await history.snapshot_as_of(
            world.uow, world.company_id, None, now + delta, RETENTION
        )

    await as_of(-RETENTION)  # the oldest instant kept
    for delta in (-RETENTION - timedelta(seconds=1), timedelta(seconds=1)):
        refused = await _refused(as_of(delta))
        assert refused.reason == Reason.SNAPSHOT_TIME_OUT_OF_RANGE.name
        assert refused.metadata["latest_time"] == now.isoformat()
    world.uow.state.horizons[world.company_id] = now - timedelta(days=1)
    refused = await _refused(as_of(-timedelta(days=2)))
    assert refused.metadata["earliest_time"] == (now - timedelta(days=1)).isoformat()


async def test_the_purge_keeps_what_as_of_snapshots_within_the_retention_need(
    world: World,
) -> None:
    kept, ended = await world.add("a", 2)
    await world.acquire("a", 1, sources=frozenset({Source.OWN_SPARE}))
    assigned = next(u for u in world.units(UnitState.ASSIGNED))
    gone = ended if assigned.unit_id == kept.unit_id else kept
    terminate = units.TerminateUnits(world.company_id, (gone.unit_id,))
    await world.run(lambda tx: units.terminate_units(terminate, tx))
    world.advance(RETENTION + timedelta(days=1))
    live = await units.snapshot(world.uow, world.company_id, None)

    assert await history.purge_history(world.uow, RETENTION) == 3

    left = await events(world)
    assert [(e.kind, e.unit_id) for e in left] == [(EventKind.ACQUIRED, assigned.unit_id)]
    oldest = live.taken_at - RETENTION
    then = await history.snapshot_as_of(world.uow, world.company_id, None, oldest, RETENTION)
    assert then == replace(live, taken_at=oldest)  # nothing changed since


async def _refused(call: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call  # type: ignore[misc]
    return caught.value
