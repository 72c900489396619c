"""Pools and offices on the in-memory pool (docs/product.md, "Pools"): enabling is
one-way and all-or-nothing, for bundle plans only; what an office could take now."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from libs.common.errors import DomainError, FailedPrecondition, NotFound
from services.pool.domain.model import Office, PlanKind, UnitState
from services.pool.use_cases import offices, pools
from services.pool.use_cases.pools import EnablePool
from tests.unit.pool.world import GRACE, World


@pytest.fixture
async def world() -> World:
    w = World()
    await w.office("a")
    await w.office("b")
    return w


async def refused(world: World, call: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_enabling_pools_every_spare_unit_of_a_poolable_type(world: World) -> None:
    await world.office("e", "EUR")
    connect = await world.add("a", 2)
    usage = await world.add("b", 1, "agentic_ai")  # never poolable
    euros = await world.add("e", 1)
    enabled = await world.enable()
    now = world.uow.clock.now()
    assert enabled.pool.enabled_at == now
    assert sorted(enabled.office_ids) == sorted([world.offices["a"], world.offices["b"]])
    assert sorted(u.unit_id for u in enabled.moved) == sorted(u.unit_id for u in connect)
    for unit in connect:
        moved = world.unit(unit.unit_id)
        assert (moved.state, moved.claimable_at, moved.office_id) == (
            UnitState.POOLED,
            now,  # claimable at once
            world.offices["a"],
        )
    assert world.unit(usage[0].unit_id).state is UnitState.SPARE
    assert world.unit(euros[0].unit_id).state is UnitState.SPARE


async def test_enabling_twice_is_refused(world: World) -> None:
    await world.enable()
    error = await refused(world, world.enable())
    assert (error.reason, error.metadata) == ("POOL_ALREADY_ENABLED", {"currency": "USD"})


async def test_a_legacy_plan_in_the_currency_refuses_enabling_and_changes_nothing(
    world: World,
) -> None:
    await world.office("old", kind=PlanKind.LEGACY)
    await world.add("a", 1)
    error = await refused(world, world.enable())
    assert error.reason == "LEGACY_PLAN_IN_CURRENCY"
    assert error.metadata["office_ids"] == str(world.offices["old"])
    assert world.uow.state.pools == {}
    assert {u.state for u in world.units()} == {UnitState.SPARE}


async def test_the_preview_answers_the_same_and_changes_nothing(world: World) -> None:
    await world.add("a", 2)
    preview = await pools.preview_enable(world.uow, EnablePool(world.company_id, "USD"))
    assert not preview.pool.enabled
    assert {u.state for u in preview.moved} == {UnitState.POOLED}
    assert {u.state for u in world.units()} == {UnitState.SPARE}
    enabled = await world.enable()
    assert [u.unit_id for u in preview.moved] == [u.unit_id for u in enabled.moved]
    error = await refused(
        world, pools.preview_enable(world.uow, EnablePool(world.company_id, "USD"))
    )
    assert error.reason == "POOL_ALREADY_ENABLED"


async def test_disabling_is_always_refused(world: World) -> None:
    error = await refused(world, pools.disable_pool(world.uow, world.company_id, "USD"))
    assert error.reason == "POOL_NOT_ENABLED"
    await world.enable()
    error = await refused(world, pools.disable_pool(world.uow, world.company_id, "USD"))
    assert isinstance(error, FailedPrecondition)
    assert error.reason == "POOL_ENABLEMENT_IRREVERSIBLE"
    assert (await world.run(lambda tx: tx.pools.get(world.company_id, "USD"))).enabled


async def test_an_office_of_a_pooled_currency_cannot_go_legacy(world: World) -> None:
    await world.enable()
    error = await refused(world, world.office("a", kind=PlanKind.LEGACY))
    assert error.reason == "LEGACY_PLAN_IN_CURRENCY"
    assert world.uow.state.offices[world.offices["a"]].plan_kind is PlanKind.BUNDLE


async def test_an_office_with_live_units_keeps_its_currency(world: World) -> None:
    await world.office("c", "USD")
    await world.office("c", "EUR")  # no units yet: it may change
    await world.add("c", 1)
    error = await refused(world, world.office("c", "USD"))
    assert error.reason == "OFFICE_HAS_UNITS"
    assert world.uow.state.offices[world.offices["c"]].currency == "EUR"


async def test_another_companys_office_id_is_not_found(world: World) -> None:
    other = Office(uuid.uuid4(), world.offices["a"], "USD", PlanKind.BUNDLE, False)
    error = await refused(world, world.run(lambda tx: offices.put_office(other, tx)))
    assert isinstance(error, NotFound)
    assert error.reason == "OFFICE_NOT_FOUND"
    assert world.uow.state.offices[world.offices["a"]].company_id == world.company_id


async def test_availability_counts_each_source_by_the_grace_rule(world: World) -> None:
    await world.enable()
    mine = await world.acquire_spare("a", 2)
    theirs = await world.acquire_spare("b", 3)
    await world.give_back([u.unit_id for u in theirs])
    await world.give_back([mine[0].unit_id])  # a's own, in grace
    await world.add("a", 4)
    await world.mark_for_removal("a", 1)

    async def available(*types: str) -> list[tuple[str, int, int, int, int]]:
        query = pools.GetAvailability(world.company_id, world.offices["a"], types)
        now, found = await pools.availability(world.uow, query)
        assert now == world.uow.clock.now()
        return [
            (a.license_type, a.own_spare, a.own_in_grace, a.pool_claimable, a.removal_scheduled)
            for a in found
        ]

    world.advance(GRACE - timedelta(microseconds=1))
    assert await available() == [("connect", 3, 1, 0, 1)]  # b's returns: still in grace
    world.advance(timedelta(microseconds=1))
    assert await available("connect", "fax") == [("connect", 3, 0, 4, 1), ("fax", 0, 0, 0, 0)]
