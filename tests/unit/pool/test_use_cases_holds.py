"""Holds on the in-memory pool (docs/product.md, "Holds"): a hold resolves at most once,
by commit, release or expiry, and its units end up exactly one way."""

from __future__ import annotations

from datetime import timedelta

import pytest

from libs.common.errors import FailedPrecondition, InvalidArgument
from services.pool.domain.errors import HoldLapsed
from services.pool.domain.model import Assignee, Hold, HoldState, UnitState
from tests.unit.pool.world import GRACE, World

TTL = timedelta(minutes=5)


@pytest.fixture
async def world() -> World:
    w = World()
    await w.office("a")
    await w.office("b")
    return w


async def pooled(world: World, quantity: int) -> None:
    """`quantity` units of a in the pool, claimable by b."""
    await world.add("a", quantity)
    await world.enable()


async def reserve(world: World, office: str, quantity: int) -> Hold:
    held = await world.reserve(office, quantity, ttl=TTL)
    assert held.hold is not None
    return held.hold


async def test_reserved_units_are_held_from_where_they_were(world: World) -> None:
    await pooled(world, 2)
    hold = await reserve(world, "b", 2)
    assert hold.state is HoldState.PENDING
    assert hold.expires_at == world.uow.clock.now() + TTL
    for unit in world.units():
        assert (unit.state, unit.held_from, unit.hold_id) == (
            UnitState.HELD,
            UnitState.POOLED,
            hold.hold_id,
        )
        assert unit.office_id == world.offices["a"]  # not b's until committed


async def test_commit_with_assignees_gives_the_units_to_the_holds_office(world: World) -> None:
    await pooled(world, 2)
    hold = await reserve(world, "b", 2)
    people = (Assignee("USER", "u1"), Assignee("USER", "u2"))
    committed = await world.commit(hold, people)
    assert committed.hold.state is HoldState.COMMITTED
    assert committed.hold.resolved_at == world.uow.clock.now()
    assert [u.assignee for u in committed.units] == list(people)  # in unit-id order
    assert {(u.state, u.office_id, u.claimable_at) for u in world.units()} == {
        (UnitState.ASSIGNED, world.offices["b"], None)
    }


async def test_commit_without_assignees_makes_the_units_spare_of_the_office(
    world: World,
) -> None:
    await pooled(world, 2)
    hold = await reserve(world, "b", 2)
    await world.commit(hold)
    assert {(u.state, u.office_id) for u in world.units()} == {
        (UnitState.SPARE, world.offices["b"])
    }


async def test_assignees_must_match_the_held_units(world: World) -> None:
    await pooled(world, 2)
    hold = await reserve(world, "b", 2)
    with pytest.raises(InvalidArgument) as refused:
        await world.commit(hold, (Assignee("USER", "u1"),))
    assert refused.value.reason == "ASSIGNEE_COUNT_MISMATCH"
    assert (await world.hold(hold)).state is HoldState.PENDING


async def test_a_hold_commits_once(world: World) -> None:
    await pooled(world, 1)
    hold = await reserve(world, "b", 1)
    await world.commit(hold)
    for again in (world.commit(hold), world.release(hold)):
        with pytest.raises(FailedPrecondition) as refused:
            await again
        assert refused.value.reason == "HOLD_NOT_PENDING"
        assert refused.value.metadata["state"] == "COMMITTED"
    assert {u.state for u in world.units()} == {UnitState.SPARE}


async def test_release_puts_every_unit_back_exactly(world: World) -> None:
    await world.enable()
    returned = await world.acquire_spare("a", 2)
    await world.give_back([u.unit_id for u in returned])  # pooled, in grace for b...
    world.advance(GRACE)  # ...claimable now
    before = world.units()
    hold = await reserve(world, "b", 2)
    world.advance(timedelta(seconds=10))
    released = await world.release(hold)
    assert released.state is HoldState.RELEASED
    after = world.units()
    assert [(u.state, u.office_id, u.returned_at, u.claimable_at, u.hold_id) for u in after] == [
        (u.state, u.office_id, u.returned_at, u.claimable_at, None) for u in before
    ]


async def test_a_released_hold_stays_released(world: World) -> None:
    await pooled(world, 1)
    hold = await reserve(world, "b", 1)
    await world.release(hold)
    again = await world.release(hold)  # answered as it is
    assert again.state is HoldState.RELEASED
    with pytest.raises(FailedPrecondition) as refused:
        await world.commit(hold)
    assert refused.value.reason == "HOLD_NOT_PENDING"
    assert {u.state for u in world.units()} == {UnitState.POOLED}


async def test_commit_at_the_expiry_instant_is_too_late_and_expires_the_hold(
    world: World,
) -> None:
    await pooled(world, 2)
    hold = await reserve(world, "b", 2)
    world.advance(TTL)  # expires_at itself is expired
    with pytest.raises(HoldLapsed) as lapsed:
        await world.commit(hold)
    assert lapsed.value.reason == "HOLD_EXPIRED"
    # The commit's transaction is rolled back: nothing moved, the hold is still pending...
    assert (await world.hold(hold)).state is HoldState.PENDING
    # ...until the caller of the commit expires it, before answering.
    await world.expiry.expire_lapsed(lapsed.value)
    assert (await world.hold(hold)).state is HoldState.EXPIRED
    assert {(u.state, u.hold_id) for u in world.units()} == {(UnitState.POOLED, None)}
    with pytest.raises(FailedPrecondition) as refused:
        await world.commit(hold)
    assert refused.value.reason == "HOLD_EXPIRED"


async def test_commit_just_before_expiry_is_in_time(world: World) -> None:
    await pooled(world, 1)
    hold = await reserve(world, "b", 1)
    world.advance(TTL - timedelta(microseconds=1))
    assert (await world.commit(hold)).hold.state is HoldState.COMMITTED


async def test_release_of_a_lapsed_hold_expires_it(world: World) -> None:
    await pooled(world, 1)
    hold = await reserve(world, "b", 1)
    world.advance(TTL)
    released = await world.release(hold)
    assert released.state is HoldState.EXPIRED
    assert {u.state for u in world.units()} == {UnitState.POOLED}


async def test_the_sweeper_expires_due_holds_once(world: World) -> None:
    await pooled(world, 3)
    early = await reserve(world, "b", 1)
    world.advance(timedelta(minutes=1))
    late = await reserve(world, "b", 1)
    committed = await reserve(world, "b", 1)
    await world.commit(committed)
    world.advance(TTL - timedelta(minutes=1))  # early is due, late is not
    assert await world.expiry.expire_all_due() == 1
    assert await world.expiry.expire_all_due() == 0  # at most once
    assert [(await world.hold(h)).state for h in (early, late, committed)] == [
        HoldState.EXPIRED,
        HoldState.PENDING,
        HoldState.COMMITTED,
    ]
    assert world.unit(early.unit_ids[0]).state is UnitState.POOLED
    assert world.unit(late.unit_ids[0]).state is UnitState.HELD


async def test_spare_units_held_while_the_pool_is_enabled_return_to_the_pool(
    world: World,
) -> None:
    await world.add("a", 1)
    hold = await reserve(world, "a", 1)
    await world.enable()
    assert world.unit(hold.unit_ids[0]).held_from is UnitState.POOLED
    await world.release(hold)
    (unit,) = world.units()
    assert (unit.state, unit.claimable_at) == (UnitState.POOLED, world.uow.clock.now())
