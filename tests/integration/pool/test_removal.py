"""Removal scheduling, restore and termination of units."""

import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pb
from tests.support.pool import Company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def mark(company: Company, office: str, quantity: int) -> pb.MarkForRemovalResponse:
    response: pb.MarkForRemovalResponse = await company.stub.MarkForRemoval(
        pb.MarkForRemovalRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=company.offices[office],
            license_type="connect",
            quantity=quantity,
        )
    )
    return response


async def restore(company: Company, office: str, quantity: int) -> pb.RestoreFromRemovalResponse:
    response: pb.RestoreFromRemovalResponse = await company.stub.RestoreFromRemoval(
        pb.RestoreFromRemovalRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=company.offices[office],
            license_type="connect",
            quantity=quantity,
        )
    )
    return response


async def test_only_spare_units_can_be_scheduled_and_restored(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 3)
    await company.acquire("a", "connect", 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mark(company, "a", 3)
    assert reason_of(caught.value) == "NOT_ENOUGH_SPARE"
    assert len(await company.units(state=pb.UNIT_STATE_SPARE)) == 2  # nothing moved

    scheduled = await mark(company, "a", 2)
    assert {u.state for u in scheduled.units} == {pb.UNIT_STATE_REMOVAL_SCHEDULED}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("a", "connect", 1)  # scheduled units are not allocatable
    assert reason_of(caught.value) == "NO_LICENSE_AVAILABLE"

    restored = await restore(company, "a", 5)  # at most what is scheduled
    assert len(restored.units) == 2
    assert {u.state for u in restored.units} == {pb.UNIT_STATE_SPARE}
    assert len((await company.acquire("a", "connect", 2)).units) == 2


async def test_terminate_refuses_units_in_use_and_ends_the_rest(company: Company) -> None:
    await company.office("a", "USD")
    spare = await company.add("a", "connect", 2)
    assigned = (await company.acquire("a", "connect", 1)).units[0].unit_id
    free = next(u for u in spare if u != assigned)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.TerminateUnits(
            pb.TerminateUnitsRequest(
                request_id=rid(), company_id=company.company_id, unit_ids=[free, assigned]
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "UNIT_IN_USE"
    assert (await company.units(state=pb.UNIT_STATE_SPARE))[0].unit_id == free

    done = await company.stub.TerminateUnits(
        pb.TerminateUnitsRequest(request_id=rid(), company_id=company.company_id, unit_ids=[free])
    )
    assert done.units[0].state == pb.UNIT_STATE_TERMINATED
    snapshot = await company.stub.GetSnapshot(pb.GetSnapshotRequest(company_id=company.company_id))
    assert snapshot.live_units == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("a", "connect", 1)
    assert reason_of(caught.value) == "NO_LICENSE_AVAILABLE"


async def test_pooled_units_can_be_terminated(company: Company) -> None:
    await company.office("a", "EUR")
    units = await company.add("a", "connect", 2)
    await company.enable("EUR")
    await company.stub.TerminateUnits(
        pb.TerminateUnitsRequest(request_id=rid(), company_id=company.company_id, unit_ids=units)
    )
    pool = await company.stub.GetPool(
        pb.GetPoolRequest(company_id=company.company_id, currency="EUR")
    )
    assert list(pool.contents) == []
