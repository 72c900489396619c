"""Two-phase allocation (docs/product.md, "Holds"): a hold resolves at most once."""

import asyncio

import grpc
import pytest

from libs.common.clock import FakeClock
from licensing.pool.v1 import pool_pb2 as pb
from services.pool.app import PoolApp
from tests.support.pool import Company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def reserve(
    company: Company, office: str, quantity: int, **extra: object
) -> pb.ReserveResponse:
    response: pb.ReserveResponse = await company.stub.Reserve(
        pb.ReserveRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=company.offices[office],
            license_type="connect",
            quantity=quantity,
            **extra,  # type: ignore[arg-type]
        )
    )
    return response


async def pooled_setup(company: Company, clock: FakeClock) -> list[str]:
    await company.office("a", "USD")
    await company.office("b", "USD")
    units = await company.add("a", "connect", 3)
    await company.enable("USD")
    return units


async def test_commit_assigns_held_units_to_the_requesting_office(
    company: Company, clock: FakeClock
) -> None:
    await pooled_setup(company, clock)
    held = await reserve(company, "b", 2)
    assert held.hold.state == pb.HOLD_STATE_PENDING
    for unit in await company.units(state=pb.UNIT_STATE_HELD):
        assert unit.held_from_state == pb.UNIT_STATE_POOLED
    committed = await company.stub.Commit(
        pb.CommitRequest(
            request_id=rid(),
            company_id=company.company_id,
            hold_id=held.hold.hold_id,
            assignees=[pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id=u) for u in ("u1", "u2")],
        )
    )
    assert committed.hold.state == pb.HOLD_STATE_COMMITTED
    assert {u.state for u in committed.units} == {pb.UNIT_STATE_ASSIGNED}
    assert {u.office_id for u in committed.units} == {company.offices["b"]}
    assert sorted(u.assignee.id for u in committed.units) == ["u1", "u2"]


async def test_commit_without_assignees_makes_units_spare_of_the_office(
    company: Company, clock: FakeClock
) -> None:
    await pooled_setup(company, clock)
    held = await reserve(company, "b", 3)
    await company.stub.Commit(
        pb.CommitRequest(request_id=rid(), company_id=company.company_id, hold_id=held.hold.hold_id)
    )
    spare = await company.units(state=pb.UNIT_STATE_SPARE)
    assert len(spare) == 3
    assert {u.office_id for u in spare} == {company.offices["b"]}
    # They are b's own now: the next allocation takes them as own spare.
    got = await company.acquire("b", "connect")
    assert got.receipt.taken[0].source == pb.ALLOCATION_SOURCE_OWN_SPARE


async def test_release_puts_units_back_exactly(company: Company, clock: FakeClock) -> None:
    await pooled_setup(company, clock)
    before = {u.unit_id: u for u in await company.units()}
    held = await reserve(company, "b", 2)
    clock.advance(seconds=10)
    released = await company.stub.Release(
        pb.ReleaseRequest(
            request_id=rid(), company_id=company.company_id, hold_id=held.hold.hold_id
        )
    )
    assert released.hold.state == pb.HOLD_STATE_RELEASED
    after = {u.unit_id: u for u in await company.units()}
    for unit_id, unit in before.items():
        assert after[unit_id].state == unit.state
        assert after[unit_id].claimable_at == unit.claimable_at
        assert after[unit_id].office_id == unit.office_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.Commit(
            pb.CommitRequest(
                request_id=rid(), company_id=company.company_id, hold_id=held.hold.hold_id
            )
        )
    assert reason_of(caught.value) == "HOLD_NOT_PENDING"


async def test_expired_hold_cannot_commit_and_its_units_are_back(
    company: Company, clock: FakeClock
) -> None:
    await pooled_setup(company, clock)
    held = await reserve(company, "b", 2, ttl_seconds=60)
    clock.advance(seconds=60)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.Commit(
            pb.CommitRequest(
                request_id=rid(), company_id=company.company_id, hold_id=held.hold.hold_id
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "HOLD_EXPIRED"
    assert len(await company.units(state=pb.UNIT_STATE_POOLED)) == 3
    hold = await company.stub.GetHold(
        pb.GetHoldRequest(company_id=company.company_id, hold_id=held.hold.hold_id)
    )
    assert hold.hold.state == pb.HOLD_STATE_EXPIRED


async def test_sweeper_expires_holds_by_the_clock(
    company: Company, clock: FakeClock, pool_service: tuple[PoolApp, object]
) -> None:
    await pooled_setup(company, clock)
    held = await reserve(company, "b", 1, ttl_seconds=30)
    app = pool_service[0]
    clock.advance(seconds=29)
    await app.expiry.expire_due()
    assert len(await company.units(state=pb.UNIT_STATE_HELD)) == 1
    clock.advance(seconds=1)
    await app.expiry.expire_due()
    assert len(await company.units(state=pb.UNIT_STATE_HELD)) == 0
    hold = await company.stub.GetHold(
        pb.GetHoldRequest(company_id=company.company_id, hold_id=held.hold.hold_id)
    )
    assert hold.hold.state == pb.HOLD_STATE_EXPIRED


async def test_partial_reserve_reports_shortfall(company: Company, clock: FakeClock) -> None:
    await pooled_setup(company, clock)
    held = await reserve(company, "b", 5, allow_partial=True, sources=[pb.ALLOCATION_SOURCE_POOL])
    assert len(held.hold.unit_ids) == 3
    assert held.receipt.shortfall == 2
    assert held.receipt.hold_id == held.hold.hold_id


async def test_partial_reserve_that_finds_nothing_holds_nothing(
    company: Company, clock: FakeClock
) -> None:
    await company.office("a", "USD")
    held = await reserve(company, "a", 2, allow_partial=True)
    assert not held.HasField("hold")
    assert held.receipt.shortfall == 2
    assert held.receipt.receipt_id == ""


async def test_commit_racing_expiry_resolves_once(
    company: Company, clock: FakeClock, pool_service: tuple[PoolApp, object]
) -> None:
    """Commit and the expiry sweep race on the same holds: each hold ends exactly one way
    and its units are either all assigned or all back, never both."""
    app = pool_service[0]
    await company.office("a", "USD")
    await company.add("a", "connect", 40)
    holds = [await reserve(company, "a", 2, ttl_seconds=60) for _ in range(20)]
    clock.advance(seconds=60)  # every hold is due: the sweeper and Commit both try to end it

    async def commit(hold_id: str) -> str:
        try:
            await company.stub.Commit(
                pb.CommitRequest(request_id=rid(), company_id=company.company_id, hold_id=hold_id)
            )
            return "committed"
        except grpc.aio.AioRpcError as error:
            return reason_of(error)

    outcomes = await asyncio.gather(
        app.expiry.expire_due(), *(commit(h.hold.hold_id) for h in holds)
    )
    assert set(outcomes[1:]) == {"HOLD_EXPIRED"}
    units = await company.units()
    assert len(units) == 40
    for held in holds:
        hold = (
            await company.stub.GetHold(
                pb.GetHoldRequest(company_id=company.company_id, hold_id=held.hold.hold_id)
            )
        ).hold
        states = {u.state for u in units if u.unit_id in set(held.hold.unit_ids)}
        assert hold.state == pb.HOLD_STATE_EXPIRED
        assert states == {pb.UNIT_STATE_SPARE}
        assert all(not u.hold_id for u in units)


async def test_commit_before_expiry_wins_against_the_sweeper(
    company: Company, clock: FakeClock, pool_service: tuple[PoolApp, object]
) -> None:
    app = pool_service[0]
    await company.office("a", "USD")
    await company.add("a", "connect", 20)
    holds = [await reserve(company, "a", 1, ttl_seconds=60) for _ in range(20)]
    clock.advance(seconds=59)

    async def commit(hold_id: str) -> pb.CommitResponse:
        response: pb.CommitResponse = await company.stub.Commit(
            pb.CommitRequest(
                request_id=rid(),
                company_id=company.company_id,
                hold_id=hold_id,
                assignees=[pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id=hold_id)],
            )
        )
        return response

    commits = asyncio.gather(*(commit(h.hold.hold_id) for h in holds))
    clock.advance(seconds=0)
    expired, committed = await asyncio.gather(app.expiry.expire_due(), commits)
    assert expired == 0
    assert len(committed) == 20
    assert len(await company.units(state=pb.UNIT_STATE_ASSIGNED)) == 20


async def test_commit_with_assignees_replays_and_the_hold_keeps_its_units(
    company: Company, clock: FakeClock
) -> None:
    await pooled_setup(company, clock)
    held = await reserve(company, "b", 2)
    commit = pb.CommitRequest(
        request_id=rid(),
        company_id=company.company_id,
        hold_id=held.hold.hold_id,
        assignees=[pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id=u) for u in ("u1", "u2")],
    )
    first = await company.stub.Commit(commit)
    assert await company.stub.Commit(commit) == first  # a replay, not a new validation
    hold = await company.stub.GetHold(
        pb.GetHoldRequest(company_id=company.company_id, hold_id=held.hold.hold_id)
    )
    assert sorted(hold.hold.unit_ids) == sorted(held.hold.unit_ids)


async def test_spare_units_held_while_the_pool_is_enabled_return_to_the_pool(
    company: Company, clock: FakeClock
) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 1)
    held = await reserve(company, "a", 1)
    await company.enable("USD")
    await company.stub.Release(
        pb.ReleaseRequest(
            request_id=rid(), company_id=company.company_id, hold_id=held.hold.hold_id
        )
    )
    (unit,) = await company.units()
    assert unit.state == pb.UNIT_STATE_POOLED
