"""Allocation order, grace, pooling rules and receipts against PostgreSQL (docs/product.md,
"Pools", "Allocation")."""

from datetime import timedelta

import grpc
import pytest

from libs.common.clock import FakeClock
from libs.common.error_status import error_info
from licensing.pool.v1 import pool_pb2 as pb
from tests.support.pool import Company, details_of, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


def sources(receipt: pb.Receipt) -> list[tuple[int, int]]:
    return [(t.source, t.quantity) for t in receipt.taken]


async def test_order_own_spare_then_own_grace_then_oldest_pool_units(
    company: Company, clock: FakeClock
) -> None:
    await company.office("hq", "USD")
    await company.office("branch", "USD")
    await company.office("shop", "USD")
    await company.enable("USD")
    # The pool gets units returned by the shop (older) then by the branch (newer).
    shop_units = await company.add("shop", "connect", 2)
    await company.give_back(
        [u.unit_id for u in (await company.acquire("shop", "connect", 2)).units]
    )
    clock.advance(minutes=1)
    await company.add("branch", "connect", 1)
    await company.give_back([u.unit_id for u in (await company.acquire("branch", "connect")).units])
    clock.advance(minutes=30)  # both returns are now claimable
    # hq returned one unit itself just now (still in grace) and has one spare.
    await company.add("hq", "connect", 1)
    hq_returned = (await company.acquire("hq", "connect")).units[0].unit_id
    await company.give_back([hq_returned])
    hq_spare = await company.add("hq", "connect", 1)

    got = await company.acquire("hq", "connect", 4)

    assert sources(got.receipt) == [
        (pb.ALLOCATION_SOURCE_OWN_SPARE, 1),
        (pb.ALLOCATION_SOURCE_OWN_RETURN_IN_GRACE, 1),
        (pb.ALLOCATION_SOURCE_POOL, 2),
    ]
    taken = [list(t.unit_ids) for t in got.receipt.taken]
    assert taken[0] == hq_spare
    assert taken[1] == [hq_returned]
    assert set(taken[2]) == set(shop_units)  # the oldest returns, not the branch's
    assert all(u.state == pb.UNIT_STATE_ASSIGNED for u in got.units)
    assert {u.office_id for u in got.units} == {company.offices["hq"]}


async def test_shortfall_fails_and_takes_nothing(company: Company) -> None:
    await company.office("a", "EUR")
    spare = await company.add("a", "sell", 2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("a", "sell", 3)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "NO_LICENSE_AVAILABLE"
    (receipt,) = details_of(caught.value, pb.Receipt)
    assert (receipt.requested, receipt.shortfall) == (3, 1)
    units = await company.units(state=pb.UNIT_STATE_SPARE)
    assert sorted(u.unit_id for u in units) == sorted(spare)


async def test_grace_boundary_exactly_at_claimable_at(company: Company, clock: FakeClock) -> None:
    await company.office("a", "GBP")
    await company.office("b", "GBP")
    await company.enable("GBP")
    await company.add("a", "support", 1)
    unit = (await company.acquire("a", "support")).units[0]
    returned = (await company.give_back([unit.unit_id])).units[0]
    assert returned.state == pb.UNIT_STATE_POOLED
    claimable_at = returned.claimable_at.ToDatetime(tzinfo=clock.now().tzinfo)
    assert claimable_at == clock.now() + timedelta(minutes=30)

    clock.set(claimable_at - timedelta(microseconds=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("b", "support")
    (receipt,) = details_of(caught.value, pb.Receipt)
    (in_grace,) = [p for p in receipt.passed_over if p.reason == pb.PASS_OVER_REASON_IN_GRACE]
    assert in_grace.quantity == 1
    assert in_grace.earliest_claimable_at == returned.claimable_at

    clock.set(claimable_at)
    claimed = await company.acquire("b", "support")
    assert claimed.units[0].unit_id == unit.unit_id


async def test_non_poolable_types_return_to_spare_and_are_not_shared(company: Company) -> None:
    await company.office("a", "USD")
    await company.office("b", "USD")
    await company.enable("USD")
    await company.add("a", "agentic_ai", 1)
    unit = (await company.acquire("a", "agentic_ai")).units[0]
    back = (await company.give_back([unit.unit_id])).units[0]
    assert back.state == pb.UNIT_STATE_SPARE
    assert back.office_id == company.offices["a"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("b", "agentic_ai")
    (receipt,) = details_of(caught.value, pb.Receipt)
    assert [(p.reason, p.quantity) for p in receipt.passed_over] == [
        (pb.PASS_OVER_REASON_NON_POOLABLE, 1)
    ]


async def test_without_a_pool_units_stay_in_their_office(
    company: Company, clock: FakeClock
) -> None:
    await company.office("a", "CAD")
    await company.office("b", "CAD")
    await company.add("a", "connect", 1)
    unit = (await company.acquire("a", "connect")).units[0]
    assert (await company.give_back([unit.unit_id])).units[0].state == pb.UNIT_STATE_SPARE
    clock.advance(hours=2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("b", "connect")
    (receipt,) = details_of(caught.value, pb.Receipt)
    assert [(p.reason, p.quantity) for p in receipt.passed_over] == [
        (pb.PASS_OVER_REASON_POOL_DISABLED, 1)
    ]


async def test_units_never_cross_currencies(company: Company) -> None:
    await company.office("us", "USD")
    await company.office("ca", "CAD")
    await company.add("us", "connect", 3)
    await company.enable("USD")
    await company.enable("CAD")
    response = await company.stub.EnablePool(
        pb.EnablePoolRequest(request_id=rid(), company_id=company.company_id, currency="AUD")
    )
    assert response.pool.enabled
    pool = await company.stub.GetPool(
        pb.GetPoolRequest(company_id=company.company_id, currency="USD")
    )
    assert [(c.license_type, c.claimable) for c in pool.contents] == [("connect", 3)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("ca", "connect")
    (receipt,) = details_of(caught.value, pb.Receipt)
    assert [(p.reason, p.quantity) for p in receipt.passed_over] == [
        (pb.PASS_OVER_REASON_OTHER_CURRENCY, 3)
    ]


async def test_units_never_leave_their_company(stub, company: Company) -> None:  # type: ignore[no-untyped-def]
    from tests.support.pool import new_company

    other = new_company(stub)
    await company.office("a", "USD")
    await other.office("a", "USD")
    await company.add("a", "connect", 5)
    await company.enable("USD")
    await other.enable("USD")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other.acquire("a", "connect")
    (receipt,) = details_of(caught.value, pb.Receipt)
    assert receipt.passed_over == []
    assert len(await company.units(state=pb.UNIT_STATE_POOLED)) == 5


async def test_enable_pool_moves_spare_poolable_units_and_is_one_way(company: Company) -> None:
    await company.office("a", "JPY")
    await company.office("b", "JPY")
    connect = await company.add("a", "connect", 2)
    await company.add("b", "agentic_ai", 1)
    preview = await company.stub.EnablePool(
        pb.EnablePoolRequest(
            request_id=rid(), company_id=company.company_id, currency="JPY", validate_only=True
        )
    )
    assert not preview.pool.enabled
    assert [(m.office_id, m.license_type, m.quantity) for m in preview.moved] == [
        (company.offices["a"], "connect", 2)
    ]
    assert preview.moved_total == 2
    assert len(await company.units(state=pb.UNIT_STATE_POOLED)) == 0  # nothing changed

    enabled = await company.enable("JPY")
    assert enabled.pool.enabled
    assert enabled.moved == preview.moved
    assert sorted(enabled.office_ids) == sorted(company.offices.values())
    pooled = await company.units(state=pb.UNIT_STATE_POOLED)
    assert sorted(u.unit_id for u in pooled) == sorted(connect)
    assert all(u.claimable_at == enabled.pool.enable_time for u in pooled)
    assert len(await company.units(state=pb.UNIT_STATE_SPARE)) == 1  # non-poolable stays

    for call, reason in (
        (company.stub.EnablePool, "POOL_ALREADY_ENABLED"),
        (company.stub.DisablePool, "POOL_ENABLEMENT_IRREVERSIBLE"),
    ):
        request_type = (
            pb.EnablePoolRequest if call == company.stub.EnablePool else pb.DisablePoolRequest
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(
                request_type(request_id=rid(), company_id=company.company_id, currency="JPY")
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(caught.value) == reason


async def test_legacy_plan_blocks_enabling_and_cannot_join_later(company: Company) -> None:
    await company.office("a", "NZD")
    legacy = await company.office("b", "NZD", kind=pb.PLAN_KIND_LEGACY)
    await company.add("a", "connect", 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.enable("NZD")
    assert reason_of(caught.value) == "LEGACY_PLAN_IN_CURRENCY"
    assert error_info(caught.value).metadata["office_ids"] == legacy  # type: ignore[union-attr]
    assert len(await company.units(state=pb.UNIT_STATE_SPARE)) == 1  # all or nothing

    await company.stub.PutOffice(
        pb.PutOfficeRequest(
            request_id=rid(),
            office=pb.Office(
                company_id=company.company_id,
                office_id=legacy,
                currency="NZD",
                plan_kind=pb.PLAN_KIND_BUNDLE,
            ),
        )
    )
    await company.enable("NZD")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.office("c", "NZD", kind=pb.PLAN_KIND_LEGACY)
    assert reason_of(caught.value) == "LEGACY_PLAN_IN_CURRENCY"


async def test_receipts_are_stored_and_fetched(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "fax", 2)
    got = await company.acquire("a", "fax", 2, assignees=["line-1", "line-2"])
    assert sorted(u.assignee.id for u in got.units) == ["line-1", "line-2"]
    fetched = await company.stub.GetReceipt(
        pb.GetReceiptRequest(company_id=company.company_id, receipt_id=got.receipt.receipt_id)
    )
    assert fetched.receipt == got.receipt


async def test_snapshot_counts_every_live_unit_once(company: Company, clock: FakeClock) -> None:
    a = await company.office("a", "USD")
    b = await company.office("b", "USD")
    await company.office("e", "EUR")
    await company.add("a", "connect", 4)
    await company.add("b", "connect", 1)
    await company.add("e", "sell", 2)
    assigned = await company.acquire("a", "connect", 2)
    await company.enable("USD")  # a's 2 spare + b's 1 spare enter the pool
    await company.give_back([assigned.units[0].unit_id])  # pooled, in grace
    hold = await company.stub.Reserve(
        pb.ReserveRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=b,
            license_type="connect",
            quantity=2,
        )
    )
    assert len(hold.hold.unit_ids) == 2

    snapshot = await company.stub.GetSnapshot(pb.GetSnapshotRequest(company_id=company.company_id))

    lines = {(line.office_id, line.license_type): line for line in snapshot.office_lines}
    assert lines[(a, "connect")].assigned == 1
    (usd_pool,) = [p for p in snapshot.pool_lines if p.currency == "USD"]
    assert (usd_pool.pooled, usd_pool.held) == (2, 2)
    counted = sum(
        line.assigned + line.spare + line.held + line.removal_scheduled
        for line in snapshot.office_lines
    ) + sum(p.pooled + p.held for p in snapshot.pool_lines)
    assert counted == snapshot.live_units == 7
    eur = await company.stub.GetSnapshot(
        pb.GetSnapshotRequest(company_id=company.company_id, currency="EUR")
    )
    assert eur.live_units == 2
    assert not eur.pool_lines


async def test_list_units_paginates_without_gaps(company: Company) -> None:
    await company.office("a", "USD")
    created = await company.add("a", "connect", 25)
    seen: list[str] = []
    token = ""
    while True:
        page = await company.stub.ListUnits(
            pb.ListUnitsRequest(company_id=company.company_id, page_size=7, page_token=token)
        )
        assert len(page.units) <= 7
        seen.extend(u.unit_id for u in page.units)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(created)
    assert len(seen) == 25


async def test_reassign_changes_the_assignee_only(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 2)
    got = await company.acquire("a", "connect", 1, assignees=["alice"])
    unit = got.units[0]
    moved = await company.stub.ReassignUnits(
        pb.ReassignUnitsRequest(
            request_id=rid(),
            company_id=company.company_id,
            reassignments=[
                pb.Reassignment(
                    unit_id=unit.unit_id, assignee=pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id="bob")
                )
            ],
        )
    )
    (after,) = moved.units
    assert (after.state, after.office_id, after.assignee.id) == (
        pb.UNIT_STATE_ASSIGNED,
        unit.office_id,
        "bob",
    )
    spare = (await company.units(state=pb.UNIT_STATE_SPARE))[0]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.ReassignUnits(
            pb.ReassignUnitsRequest(
                request_id=rid(),
                company_id=company.company_id,
                reassignments=[
                    pb.Reassignment(
                        unit_id=spare.unit_id,
                        assignee=pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id="carol"),
                    )
                ],
            )
        )
    assert reason_of(caught.value) == "UNIT_NOT_ASSIGNED"


async def test_an_office_keeps_its_name_when_put_without_one(company: Company) -> None:
    office_id = await company.office("a", "USD")

    async def put(name: str) -> pb.Office:
        response = await company.stub.PutOffice(
            pb.PutOfficeRequest(
                request_id=rid(),
                office=pb.Office(
                    company_id=company.company_id,
                    office_id=office_id,
                    currency="USD",
                    plan_kind=pb.PLAN_KIND_BUNDLE,
                    display_name=name,
                ),
            )
        )
        return response.office

    named = await put("Tokyo [HQ]")
    assert named.display_name == "Tokyo [HQ]"
    assert named.create_time.seconds > 0
    kept = await put("")  # billing puts the plan's facts without a name
    assert kept.display_name == "Tokyo [HQ]"
    assert kept.create_time == named.create_time
    assert (await put("Osaka")).display_name == "Osaka"
    listed = await company.stub.ListOffices(pb.ListOfficesRequest(company_id=company.company_id))
    assert [o.display_name for o in listed.offices] == ["Osaka"]
