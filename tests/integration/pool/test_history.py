"""Unit history and as-of snapshots against PostgreSQL (docs/product.md, "Unit history
and as-of snapshots"): the statements that change units write their events, ListUnitEvents
pages through them per unit, office or time range within one company, and GetSnapshot
as of a past instant gives the counts a live snapshot gave then."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.clock import DatabaseClock, FakeClock
from libs.common.timestamps import timestamp
from licensing.pool.v1 import pool_pb2 as pb
from services.pool.app import PoolApp
from services.pool.domain.history import NO_CAUSE
from services.pool.unit_of_work import unit_of_work
from services.pool.use_cases import units
from services.pool.use_cases.history import purge_history, snapshot_as_of
from tests.support.pool import Company, new_company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

K = pb.UnitEventKind


async def history(company: Company, **query: object) -> list[pb.UnitEvent]:
    found: list[pb.UnitEvent] = []
    token = ""
    while True:
        page = await company.stub.ListUnitEvents(
            pb.ListUnitEventsRequest(
                company_id=company.company_id,
                page_token=token,
                **query,  # type: ignore[arg-type]
            )
        )
        found.extend(page.events)
        token = page.next_page_token
        if not token:
            return found


async def snapshot(company: Company, at: Timestamp | None = None) -> pb.GetSnapshotResponse:
    response: pb.GetSnapshotResponse = await company.stub.GetSnapshot(
        pb.GetSnapshotRequest(company_id=company.company_id, as_of_time=at)
    )
    return response


async def test_a_units_timeline_says_where_it_is_and_why(
    company: Company, clock: FakeClock
) -> None:
    await company.office("a", "USD")
    await company.office("b", "USD")
    created = await company.stub.AddUnits(
        pb.AddUnitsRequest(
            request_id="buy-1",
            company_id=company.company_id,
            office_id=company.offices["a"],
            license_type="connect",
            quantity=1,
            origin="purchase p-1",
        )
    )
    unit = created.units[0].unit_id
    await company.enable("USD")
    clock.advance(minutes=1)
    acquired = await company.acquire("b", "connect", request_id="acq-1", assignees=["u1"])
    clock.advance(minutes=1)
    await company.give_back([unit])
    clock.advance(hours=1)
    held = await company.reserve("a", "connect", request_id="res-1")
    await company.stub.Release(
        pb.ReleaseRequest(
            request_id="rel-1", company_id=company.company_id, hold_id=held.hold.hold_id
        )
    )
    await company.stub.TerminateUnits(
        pb.TerminateUnitsRequest(request_id="end-1", company_id=company.company_id, unit_ids=[unit])
    )

    events = await history(company, unit_id=unit)
    assert [e.kind for e in events] == [
        K.UNIT_EVENT_KIND_CREATED,
        K.UNIT_EVENT_KIND_POOLED,
        K.UNIT_EVENT_KIND_ACQUIRED,
        K.UNIT_EVENT_KIND_RETURNED,
        K.UNIT_EVENT_KIND_RESERVED,
        K.UNIT_EVENT_KIND_RELEASED,
        K.UNIT_EVENT_KIND_TERMINATED,
    ]
    made, pooled, taken, returned, reserved, released, ended = events
    assert (made.origin, made.request_id, made.state) == (
        "purchase p-1",
        "buy-1",
        pb.UNIT_STATE_SPARE,
    )
    assert made.office_id == company.offices["a"]
    assert pooled.state == pb.UNIT_STATE_POOLED
    assert (taken.office_id, taken.source, taken.assignee.id) == (
        company.offices["b"],
        pb.ALLOCATION_SOURCE_POOL,
        "u1",
    )
    assert (taken.receipt_id, taken.request_id) == (acquired.receipt.receipt_id, "acq-1")
    assert (returned.state, returned.office_id) == (pb.UNIT_STATE_POOLED, company.offices["b"])
    assert returned.claimable_at.ToDatetime() - returned.occur_time.ToDatetime() == timedelta(
        minutes=30
    )
    assert (reserved.state, reserved.held_from_state, reserved.hold_id) == (
        pb.UNIT_STATE_HELD,
        pb.UNIT_STATE_POOLED,
        held.hold.hold_id,
    )
    assert (reserved.for_office_id, reserved.receipt_id) == (
        company.offices["a"],
        held.receipt.receipt_id,
    )
    assert (released.state, released.hold_id, released.request_id) == (
        pb.UNIT_STATE_POOLED,
        held.hold.hold_id,
        "rel-1",
    )
    assert released.claimable_at == returned.claimable_at  # back exactly as it was
    assert (ended.state, ended.request_id) == (pb.UNIT_STATE_TERMINATED, "end-1")
    assert [e.occur_time.ToDatetime() for e in events] == sorted(
        e.occur_time.ToDatetime() for e in events
    )


async def test_commits_removals_and_reassignments_are_in_the_history(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 2)
    held = await company.reserve("a", "connect")
    await company.stub.Commit(
        pb.CommitRequest(
            request_id="commit-1",
            company_id=company.company_id,
            hold_id=held.hold.hold_id,
            assignees=[pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id="u1")],
        )
    )
    unit = held.hold.unit_ids[0]
    await company.stub.ReassignUnits(
        pb.ReassignUnitsRequest(
            request_id=rid(),
            company_id=company.company_id,
            reassignments=[
                pb.Reassignment(
                    unit_id=unit, assignee=pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id="u2")
                )
            ],
        )
    )
    marked = await company.stub.MarkForRemoval(
        pb.MarkForRemovalRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=company.offices["a"],
            license_type="connect",
            quantity=1,
        )
    )
    await company.stub.RestoreFromRemoval(
        pb.RestoreFromRemovalRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=company.offices["a"],
            license_type="connect",
            quantity=1,
        )
    )
    events = await history(company, unit_id=unit)
    assert [e.kind for e in events][-2:] == [
        K.UNIT_EVENT_KIND_COMMITTED,
        K.UNIT_EVENT_KIND_REASSIGNED,
    ]
    committed, reassigned = events[-2:]
    assert (committed.hold_id, committed.receipt_id, committed.request_id) == (
        held.hold.hold_id,
        held.receipt.receipt_id,
        "commit-1",
    )
    assert (committed.assignee.id, reassigned.assignee.id) == ("u1", "u2")
    other = marked.units[0].unit_id
    assert [e.kind for e in await history(company, unit_id=other)] == [
        K.UNIT_EVENT_KIND_CREATED,
        K.UNIT_EVENT_KIND_REMOVAL_SCHEDULED,
        K.UNIT_EVENT_KIND_RESTORED,
    ]


async def test_expiry_and_enabling_under_a_hold_are_in_the_history(
    company: Company, clock: FakeClock, pool_service: tuple[object, object]
) -> None:
    await company.office("a", "USD")
    (unit,) = await company.add("a", "connect", 1)
    held = await company.reserve("a", "connect", ttl_seconds=60)
    await company.enable("USD")  # the held spare unit will go back to the pool
    clock.advance(minutes=2)
    app = pool_service[0]
    assert await app.expiry.expire_due() >= 1  # type: ignore[attr-defined]
    events = await history(company, unit_id=unit)
    assert [(e.kind, e.state, e.held_from_state) for e in events] == [
        (K.UNIT_EVENT_KIND_CREATED, pb.UNIT_STATE_SPARE, pb.UNIT_STATE_UNSPECIFIED),
        (K.UNIT_EVENT_KIND_RESERVED, pb.UNIT_STATE_HELD, pb.UNIT_STATE_SPARE),
        (K.UNIT_EVENT_KIND_POOLED, pb.UNIT_STATE_HELD, pb.UNIT_STATE_POOLED),
        (K.UNIT_EVENT_KIND_EXPIRED, pb.UNIT_STATE_POOLED, pb.UNIT_STATE_UNSPECIFIED),
    ]
    assert events[-1].hold_id == held.hold.hold_id
    assert events[-1].request_id == ""  # nobody asked: the sweeper


async def test_pages_offices_and_time_ranges(company: Company, clock: FakeClock) -> None:
    await company.office("a", "USD")
    await company.office("b", "EUR")
    await company.add("a", "connect", 3)
    clock.advance(minutes=1)
    start = timestamp(clock.now())
    await company.add("b", "connect", 2)
    clock.advance(minutes=1)
    end = timestamp(clock.now())
    await company.add("a", "connect", 1)

    everything = await history(company, page_size=2)
    assert len(everything) == 6
    assert len({e.event_id for e in everything}) == 6
    keys = [(e.occur_time.ToDatetime(), e.event_id) for e in everything]
    assert keys == sorted(keys)
    in_b = await history(company, office_id=company.offices["b"])
    assert {e.office_id for e in in_b} == {company.offices["b"]}
    assert len(in_b) == 2
    window = await history(company, start_time=start, end_time=end)
    assert [e.office_id for e in window] == [company.offices["b"]] * 2


async def test_another_companys_ids_are_not_found(company: Company) -> None:
    await company.office("a", "USD")
    (unit,) = await company.add("a", "connect", 1)
    stranger = new_company(company.stub)
    for field, value, reason in (
        ("unit_id", unit, "UNIT_NOT_FOUND"),
        ("office_id", company.offices["a"], "OFFICE_NOT_FOUND"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await history(stranger, **{field: value})
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert reason_of(caught.value) == reason
    assert await history(stranger) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.ListUnitEvents(pb.ListUnitEventsRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.ListUnitEvents(
            pb.ListUnitEventsRequest(company_id=company.company_id, page_token="not-a-token")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_past_snapshot_is_the_one_taken_then(company: Company, clock: FakeClock) -> None:
    await company.office("a", "USD")
    await company.office("b", "USD")
    await company.add("a", "connect", 3)
    await company.enable("USD")
    await company.acquire("b", "connect", 1)
    clock.advance(seconds=1)
    then = await snapshot(company)
    clock.advance(seconds=1)
    await company.acquire("a", "connect", 2)
    await company.add("b", "sell", 4)
    now = await snapshot(company)
    assert now != then

    assert await snapshot(company, then.snapshot_time) == then
    assert await snapshot(company, now.snapshot_time) == now
    before_anything = timestamp(clock.now() - timedelta(days=1))
    assert (await snapshot(company, before_anything)).live_units == 0


async def test_a_snapshot_beyond_the_history_kept_is_out_of_range(
    company: Company, clock: FakeClock
) -> None:
    await company.office("a", "USD")
    for at in (clock.now() - timedelta(days=401), clock.now() + timedelta(seconds=1)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await snapshot(company, timestamp(at))
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert reason_of(caught.value) == "SNAPSHOT_TIME_OUT_OF_RANGE"


async def test_the_purge_keeps_each_live_units_state_at_the_cutoff(
    company: Company, clock: FakeClock, pool_service: tuple[PoolApp, object]
) -> None:
    await company.office("a", "USD")
    kept, ended = await company.add("a", "connect", 2)
    await company.stub.TerminateUnits(
        pb.TerminateUnitsRequest(request_id=rid(), company_id=company.company_id, unit_ids=[ended])
    )
    await company.acquire("a", "connect", 1)
    clock.advance(hours=2)
    live = await snapshot(company)
    uow = unit_of_work(pool_service[0].db, clock)

    assert await purge_history(uow, timedelta(hours=1)) >= 3

    assert [e.kind for e in await history(company, unit_id=kept)] == [K.UNIT_EVENT_KIND_ACQUIRED]
    assert await history(company, unit_id=ended) == []
    cutoff = timestamp(clock.now() - timedelta(hours=1))
    then = await snapshot(company, cutoff)
    assert (then.office_lines, then.live_units) == (live.office_lines, live.live_units)


async def test_a_retry_that_names_another_origin_replays_the_first_call(company: Company) -> None:
    await company.office("a", "USD")

    async def add(origin: str) -> pb.AddUnitsResponse:
        response: pb.AddUnitsResponse = await company.stub.AddUnits(
            pb.AddUnitsRequest(
                request_id="buy-twice",
                company_id=company.company_id,
                office_id=company.offices["a"],
                license_type="connect",
                quantity=2,
                origin=origin,
            )
        )
        return response

    first = await add("purchase p-1")
    assert await add("") == first  # a caller from before origins existed, retrying
    assert len(await company.units()) == 2
    events = await history(company)
    assert {e.origin for e in events} == {"purchase p-1"}


async def test_a_live_snapshot_waits_for_the_writer_in_flight_and_leaves_no_lock(
    company: Company, pool_service: tuple[PoolApp, object]
) -> None:
    office_id = await company.office("a", "USD")
    company_id = uuid.UUID(company.company_id)
    uow = unit_of_work(pool_service[0].db, DatabaseClock())  # not the service's test clock
    async with uow.transaction() as writer:
        now = await writer.locks.take(company_id, "USD")
        office = await writer.offices.get(company_id, uuid.UUID(office_id))
        assert office is not None
        await writer.units.add(office, "connect", 1, now, NO_CAUSE)
        reading = asyncio.create_task(units.snapshot(uow, company_id, "USD"))
        await asyncio.sleep(0.3)
        assert not reading.done()  # it waits: the writer's change is not committed yet
    live = await asyncio.wait_for(reading, 10)
    assert live.live_units == 1  # the writer's unit is in it
    assert live.taken_at > now
    then = await snapshot_as_of(uow, company_id, "USD", live.taken_at, timedelta(days=1))
    assert then == live
    async with uow.transaction() as tx:  # no lock left behind: a writer goes on at once
        await asyncio.wait_for(tx.locks.take(company_id, "USD"), 5)
