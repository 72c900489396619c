"""What the pool's use cases publish (on the in-memory outbox): one event per change, in
the change's transaction, nothing for a refused one."""

from __future__ import annotations

import asyncio

import pytest

from services.pool.domain import events
from services.pool.domain.errors import NoLicenseAvailable
from tests.unit.pool.world import World


async def test_every_change_of_a_unit_s_journey_publishes_its_event() -> None:
    world = World()
    await world.office("a")
    added = await world.add("a", 2)
    got = await world.acquire("a")
    await world.give_back([u.unit_id for u in got.units])
    held = await world.reserve("a")
    assert held.hold is not None
    await world.release(held.hold)
    again = await world.reserve("a")
    assert again.hold is not None
    await world.commit(again.hold)

    published = world.uow.state.events.events[world.company_id]

    assert [e.event_type for e in published] == [
        events.UNITS_ADDED,
        events.UNITS_ACQUIRED,
        events.UNITS_RETURNED,
        events.UNITS_RESERVED,
        events.HOLD_RELEASED,
        events.UNITS_RESERVED,
        events.HOLD_COMMITTED,
    ]
    assert [e.seq for e in published] == list(range(1, 8))
    assert published[0].data["unit_ids"] == [str(u.unit_id) for u in added]
    assert published[1].data["receipt_id"] == str(got.receipt.receipt_id)
    assert published[6].data["hold_id"] == str(again.hold.hold_id)
    assert {e.event_type for e in published} <= events.TYPES


async def test_a_refused_allocation_publishes_nothing() -> None:
    world = World()
    await world.office("a")
    with pytest.raises(NoLicenseAvailable):
        await world.acquire("a")
    assert world.uow.state.events.events.get(world.company_id, []) == []


async def test_companies_sharing_one_allocation_transaction_each_get_their_own_event() -> None:
    world = World()
    others = [World(uow=world.uow, codec=world.codec) for _ in range(3)]
    for w in (world, *others):
        w.allocator = world.allocator  # one service process, one writer
        w.directory = world.directory
        await w.office("a")
        await w.add("a", 1)
    commits = world.uow.commits
    results = await asyncio.gather(*(w.acquire("a") for w in (world, *others)))
    assert world.uow.commits == commits + 1  # one transaction for the four companies

    for w, result in zip((world, *others), results, strict=True):
        published = world.uow.state.events.events[w.company_id]
        assert [e.event_type for e in published] == [events.UNITS_ADDED, events.UNITS_ACQUIRED]
        assert published[1].data["receipt_id"] == str(result.receipt.receipt_id)
