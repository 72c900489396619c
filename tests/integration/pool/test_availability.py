"""GetAvailability: what an office could take now, judged by the pool's own rules (so no
caller re-implements the grace boundary)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import pytest

from libs.common.clock import FakeClock
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support.pool import Company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def availability(company: Company, office: str, *types: str) -> dict[str, tuple[int, ...]]:
    response = await company.stub.GetAvailability(
        pb.GetAvailabilityRequest(
            company_id=company.company_id, office_id=company.offices[office], license_types=types
        )
    )
    return {
        a.license_type: (a.own_spare, a.own_returns_in_grace, a.pool_claimable, a.removal_scheduled)
        for a in response.availability
    }


async def test_each_source_is_counted_and_the_grace_boundary_is_the_pools(
    company: Company, clock: FakeClock
) -> None:
    await company.office("hq", "USD")
    await company.office("branch", "USD")
    await company.office("paris", "EUR")
    await company.enable("USD")
    await company.add("hq", "connect", 3)
    await company.add("branch", "connect", 2)
    await company.add("paris", "connect", 4)  # another currency: never counted for hq
    given = [u.unit_id for u in (await company.acquire("hq", "connect", 2)).units]
    returned = (await company.give_back(given[:1])).units[0]  # hq's own return, in grace
    await company.stub.MarkForRemoval(
        pb.MarkForRemovalRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=company.offices["hq"],
            license_type="connect",
            quantity=1,
        )
    )
    others = [u.unit_id for u in (await company.acquire("branch", "connect", 2)).units]
    await company.give_back(others)  # branch's returns: in grace for everyone else

    assert await availability(company, "hq", "connect", "sell") == {
        "connect": (0, 1, 0, 1),
        "sell": (0, 0, 0, 0),
    }
    claimable_at = returned.claimable_at.ToDatetime(tzinfo=clock.now().tzinfo)
    clock.set(claimable_at - timedelta(microseconds=1))
    assert (await availability(company, "hq", "connect"))["connect"] == (0, 1, 0, 1)
    clock.set(claimable_at)  # inclusive: at claimable_at the unit is anyone's
    assert (await availability(company, "hq", "connect"))["connect"] == (0, 0, 3, 1)
    assert (await availability(company, "branch", "connect"))["connect"] == (0, 0, 3, 0)


async def test_another_companys_office_is_not_found(
    stub: pool_pb2_grpc.PoolServiceStub, company: Company
) -> None:
    office = await company.office("hq", "USD")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetAvailability(
            pb.GetAvailabilityRequest(company_id=str(uuid.uuid4()), office_id=office)
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert reason_of(caught.value) == "OFFICE_NOT_FOUND"
