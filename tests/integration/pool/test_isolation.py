"""Tenant isolation: another company's ids are NOT_FOUND and its data stays unchanged."""

import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support.pool import Company, new_company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_every_rpc_refuses_another_companys_ids(
    stub: pool_pb2_grpc.PoolServiceStub, company: Company
) -> None:
    victim = company
    office = await victim.office("a", "USD")
    await victim.add("a", "connect", 3)
    await victim.enable("USD")
    held = await victim.stub.Reserve(
        pb.ReserveRequest(
            request_id=rid(),
            company_id=victim.company_id,
            office_id=office,
            license_type="connect",
            quantity=1,
        )
    )
    assigned = await victim.acquire("a", "connect", 1)
    unit_id = assigned.units[0].unit_id
    before = await victim.units()
    snapshot_before = await stub.GetSnapshot(pb.GetSnapshotRequest(company_id=victim.company_id))

    intruder = new_company(stub)
    await intruder.office("own", "USD")
    other = intruder.company_id
    calls = [
        (stub.GetOffice, pb.GetOfficeRequest(company_id=other, office_id=office)),
        (
            stub.PutOffice,
            pb.PutOfficeRequest(
                request_id=rid(),
                office=pb.Office(
                    company_id=other,
                    office_id=office,
                    currency="USD",
                    plan_kind=pb.PLAN_KIND_LEGACY,
                ),
            ),
        ),
        (
            stub.AddUnits,
            pb.AddUnitsRequest(
                request_id=rid(),
                company_id=other,
                office_id=office,
                license_type="connect",
                quantity=5,
            ),
        ),
        (
            stub.Acquire,
            pb.AcquireRequest(
                request_id=rid(),
                company_id=other,
                office_id=office,
                license_type="connect",
                quantity=1,
            ),
        ),
        (
            stub.Reserve,
            pb.ReserveRequest(
                request_id=rid(),
                company_id=other,
                office_id=office,
                license_type="connect",
                quantity=1,
            ),
        ),
        (
            stub.Commit,
            pb.CommitRequest(request_id=rid(), company_id=other, hold_id=held.hold.hold_id),
        ),
        (
            stub.Release,
            pb.ReleaseRequest(request_id=rid(), company_id=other, hold_id=held.hold.hold_id),
        ),
        (stub.GetHold, pb.GetHoldRequest(company_id=other, hold_id=held.hold.hold_id)),
        (
            stub.ReturnUnits,
            pb.ReturnUnitsRequest(request_id=rid(), company_id=other, unit_ids=[unit_id]),
        ),
        (stub.GetUnit, pb.GetUnitRequest(company_id=other, unit_id=unit_id)),
        (
            stub.TerminateUnits,
            pb.TerminateUnitsRequest(request_id=rid(), company_id=other, unit_ids=[unit_id]),
        ),
        (
            stub.MarkForRemoval,
            pb.MarkForRemovalRequest(
                request_id=rid(),
                company_id=other,
                office_id=office,
                license_type="connect",
                quantity=1,
            ),
        ),
        (
            stub.RestoreFromRemoval,
            pb.RestoreFromRemovalRequest(
                request_id=rid(),
                company_id=other,
                office_id=office,
                license_type="connect",
                quantity=1,
            ),
        ),
        (
            stub.GetReceipt,
            pb.GetReceiptRequest(company_id=other, receipt_id=assigned.receipt.receipt_id),
        ),
    ]
    for call, request in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, type(request).__name__
        assert reason_of(caught.value).endswith("_NOT_FOUND")

    # Company-wide reads see only the intruder's own data.
    assert (await stub.ListUnits(pb.ListUnitsRequest(company_id=other))).units == []
    offices = (await stub.ListOffices(pb.ListOfficesRequest(company_id=other))).offices
    assert [o.office_id for o in offices] == [intruder.offices["own"]]
    assert (await stub.GetSnapshot(pb.GetSnapshotRequest(company_id=other))).live_units == 0
    pool = await stub.GetPool(pb.GetPoolRequest(company_id=other, currency="USD"))
    assert not pool.pool.enabled
    assert not pool.contents

    assert await victim.units() == before
    snapshot_after = await stub.GetSnapshot(pb.GetSnapshotRequest(company_id=victim.company_id))
    assert snapshot_after.office_lines == snapshot_before.office_lines
    assert snapshot_after.pool_lines == snapshot_before.pool_lines
    assert reason_of(caught.value) == "RECEIPT_NOT_FOUND"


async def test_an_office_id_of_another_company_is_never_overwritten(
    stub: pool_pb2_grpc.PoolServiceStub, company: Company
) -> None:
    office = await company.office("a", "USD")
    intruder = new_company(stub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PutOffice(
            pb.PutOfficeRequest(
                request_id=rid(),
                office=pb.Office(
                    company_id=intruder.company_id, office_id=office, currency="EUR",
                    plan_kind=pb.PLAN_KIND_LEGACY,
                ),
            )
        )  # fmt: skip
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    kept = await stub.GetOffice(
        pb.GetOfficeRequest(company_id=company.company_id, office_id=office)
    )
    assert (kept.office.currency, kept.office.plan_kind) == ("USD", pb.PLAN_KIND_BUNDLE)
