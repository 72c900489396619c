"""Allocation use cases on the in-memory pool (docs/product.md, "Allocation"): the order
of sources, all or nothing, partial reservations, arrival order within a batch, replays."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from libs.common.errors import Aborted, InvalidArgument
from services.pool.domain.errors import NoLicenseAvailable
from services.pool.domain.model import Assignee, PassOverReason, Source, UnitState
from tests.unit.pool.world import GRACE, World


@pytest.fixture
async def world() -> World:
    w = World()
    await w.office("a")
    await w.office("b")
    return w


async def test_order_is_own_spare_then_own_returns_in_grace_then_pool_oldest_first(
    world: World,
) -> None:
    await world.enable()
    first, second = (u.unit_id for u in (await world.acquire_spare("b", 2)))
    await world.give_back([second])  # returned first: the oldest return
    world.advance(timedelta(minutes=1))
    await world.give_back([first])
    world.advance(GRACE + timedelta(minutes=1))  # both claimable by anyone now
    (own_return,) = (u.unit_id for u in await world.acquire_spare("a", 1))
    await world.give_back([own_return])  # a's own, in grace
    (own_spare,) = (u.unit_id for u in await world.add("a", 1))

    got = await world.acquire("a", 4)

    assert [(t.source, t.unit_ids) for t in got.receipt.taken] == [
        (Source.OWN_SPARE, (own_spare,)),
        (Source.OWN_RETURN_IN_GRACE, (own_return,)),
        (Source.POOL, (second, first)),
    ]
    assert {(u.state, u.office_id) for u in got.units} == {(UnitState.ASSIGNED, world.offices["a"])}
    assert got.receipt.shortfall == 0
    assert world.uow.state.receipts[got.receipt.receipt_id].taken == got.receipt.taken  # type: ignore[index]


async def test_a_return_in_grace_is_only_its_offices_until_claimable_at(world: World) -> None:
    await world.enable()
    (unit,) = await world.acquire_spare("a", 1)
    (returned,) = await world.give_back([unit.unit_id])
    assert returned.claimable_at == world.uow.clock.now() + GRACE

    with pytest.raises(NoLicenseAvailable) as refused:
        await world.acquire("b")
    receipt = refused.value.receipt
    assert (receipt.shortfall, receipt.taken, receipt.receipt_id) == (1, (), None)
    assert [(p.reason, p.quantity, p.earliest_claimable_at) for p in receipt.passed_over] == [
        (PassOverReason.IN_GRACE, 1, returned.claimable_at)
    ]

    world.advance(GRACE)  # the boundary itself is claimable
    got = await world.acquire("b")
    assert [(t.source, t.unit_ids) for t in got.receipt.taken] == [(Source.POOL, (unit.unit_id,))]


async def test_without_an_enabled_pool_only_own_spare_is_taken(world: World) -> None:
    await world.add("b", 2)
    with pytest.raises(NoLicenseAvailable) as refused:
        await world.acquire("a")
    assert [(p.reason, p.quantity) for p in refused.value.receipt.passed_over] == [
        (PassOverReason.POOL_DISABLED, 2)
    ]
    assert world.units(UnitState.SPARE)
    assert not world.units(UnitState.ASSIGNED)


async def test_requested_sources_limit_what_is_taken(world: World) -> None:
    await world.enable()
    (pooled,) = await world.acquire_spare("b", 1)
    await world.give_back([pooled.unit_id])
    world.advance(GRACE)
    await world.add("a", 1)
    got = await world.acquire("a", sources=frozenset({Source.POOL}))
    assert [t.source for t in got.receipt.taken] == [Source.POOL]
    assert len(world.units(UnitState.SPARE)) == 1  # a's own spare was left alone


async def test_an_allocation_that_falls_short_takes_nothing(world: World) -> None:
    spare = await world.add("a", 2)
    with pytest.raises(NoLicenseAvailable) as refused:
        await world.acquire("a", 3)
    assert refused.value.reason == "NO_LICENSE_AVAILABLE"
    assert refused.value.metadata == {"shortfall": "1", "license_type": "connect"}
    assert world.units() == sorted(spare, key=lambda u: u.unit_id)  # untouched
    assert world.uow.state.receipts == {}  # a failed allocation keeps no receipt


async def test_a_partial_reservation_holds_what_there_is(world: World) -> None:
    await world.add("a", 2)
    held = await world.reserve("a", 5, allow_partial=True)
    assert held.hold is not None
    assert (held.receipt.shortfall, len(held.hold.unit_ids)) == (3, 2)
    assert held.receipt.hold_id == held.hold.hold_id
    assert {u.state for u in world.units()} == {UnitState.HELD}
    assert world.uow.state.holds[held.hold.hold_id].unit_ids == held.hold.unit_ids


async def test_a_partial_reservation_that_finds_nothing_holds_nothing(world: World) -> None:
    held = await world.reserve("a", 2, allow_partial=True)
    assert held.hold is None
    assert (held.receipt.receipt_id, held.receipt.shortfall) == (None, 2)
    assert world.uow.state.holds == {}
    assert world.uow.state.receipts == {}


async def test_acquire_gives_each_unit_its_assignee(world: World) -> None:
    await world.add("a", 2)
    people = (Assignee("USER", "u1"), Assignee("USER", "u2"))
    got = await world.acquire("a", 2, assignees=people)
    assert [u.assignee for u in got.units] == list(people)


async def test_a_batch_serves_in_arrival_order_and_one_short_leaves_the_rest(
    world: World,
) -> None:
    await world.add("a", 3)
    commits = world.uow.commits
    results = await asyncio.gather(
        world.acquire("a", 2),
        world.acquire("a", 2),
        world.acquire("a", 1),
        return_exceptions=True,
    )
    assert world.uow.commits == commits + 1  # one batch, one transaction
    first, second, third = results
    assert not isinstance(first, BaseException)
    assert len(first.units) == 2
    assert isinstance(second, NoLicenseAvailable)
    assert not isinstance(third, BaseException)
    assert len(third.units) == 1
    assert len(world.units(UnitState.ASSIGNED)) == 3


async def test_offices_of_one_pool_in_one_batch_share_its_units_each_unit_once(
    world: World,
) -> None:
    await world.office("c")
    pooled = await world.acquire_spare("c", 3)
    await world.enable()
    await world.give_back([u.unit_id for u in pooled])
    world.advance(GRACE)
    commits = world.uow.commits
    results = await asyncio.gather(
        world.acquire("a", 2),  # the two oldest returns
        world.acquire("b", 2),  # one left: all or nothing
        world.acquire("b", 1),  # the last one
        return_exceptions=True,
    )
    assert world.uow.commits == commits + 1  # both offices in one transaction
    first, second, third = results
    assert not isinstance(first, BaseException)
    assert not isinstance(third, BaseException)
    assert isinstance(second, NoLicenseAvailable)
    taken = [u.unit_id for u in (*first.units, *third.units)]
    assert sorted(taken) == sorted(u.unit_id for u in pooled)  # each unit once
    assert {u.office_id for u in first.units} == {world.offices["a"]}
    assert [u.office_id for u in third.units] == [world.offices["b"]]


async def test_many_companies_share_one_transaction(world: World) -> None:
    others = [World(uow=world.uow, codec=world.codec) for _ in range(3)]
    for other in others:
        other.allocator = world.allocator  # one service process, one writer
        other.directory = world.directory
        await other.office("a")
        await other.add("a", 1)
    await world.add("a", 1)
    commits = world.uow.commits
    results = await asyncio.gather(*(w.acquire("a") for w in (world, *others)))
    assert world.uow.commits == commits + 1
    for w, result in zip((world, *others), results, strict=True):
        assert [u.company_id for u in result.units] == [w.company_id]


async def test_a_replay_answers_the_stored_bytes_with_no_second_effect(world: World) -> None:
    await world.add("a", 3)
    command = world.allocation("a", 1, request_id="r1")
    first = await world.allocator.allocate(command)
    again = await world.allocator.allocate(command)
    assert again == first
    assert world.codec.encoded == 1  # encoded once, replayed as it was stored
    assert len(world.units(UnitState.ASSIGNED)) == 1


async def test_the_same_request_id_twice_in_one_batch_runs_once(world: World) -> None:
    await world.add("a", 3)
    command = world.allocation("a", 1, request_id="r1")
    first, again = await asyncio.gather(
        world.allocator.allocate(command), world.allocator.allocate(command)
    )
    assert first == again
    assert len(world.units(UnitState.ASSIGNED)) == 1


async def test_a_request_id_reused_for_another_allocation_is_refused(world: World) -> None:
    await world.add("a", 3)
    await world.allocator.allocate(world.allocation("a", 1, request_id="r1"))
    with pytest.raises(InvalidArgument) as refused:
        await world.allocator.allocate(world.allocation("a", 2, request_id="r1"))
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert len(world.units(UnitState.ASSIGNED)) == 1


async def test_a_failed_allocation_leaves_its_request_id_free(world: World) -> None:
    command = world.allocation("a", 1, request_id="r1")
    with pytest.raises(NoLicenseAvailable):
        await world.allocator.allocate(command)
    await world.add("a", 1)
    got = world.codec.decode(await world.allocator.allocate(command))
    assert len(got.units) == 1


async def test_an_office_that_changed_currency_meanwhile_is_refused(world: World) -> None:
    await world.add("b", 1)
    await world.acquire("b")  # the writer now routes b by USD
    office = world.uow.state.offices[world.offices["b"]]
    world.uow.state.offices[office.office_id] = replace(office, currency="EUR")  # elsewhere
    with pytest.raises(Aborted) as refused:
        await world.acquire("b")
    assert refused.value.reason == "OFFICE_CHANGED"
    with pytest.raises(NoLicenseAvailable):  # routed anew, by EUR: no unit crosses currencies
        await world.acquire("b")


async def test_a_receipt_can_be_fetched(world: World) -> None:
    from services.pool.use_cases.allocation import get_receipt

    await world.add("a", 1)
    got = await world.acquire("a")
    assert got.receipt.receipt_id is not None
    assert await get_receipt(world.uow, world.company_id, got.receipt.receipt_id) == got.receipt
