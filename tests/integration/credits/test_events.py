"""The credits service's event stream (WatchEvents): grants, usage and pooling, in
order, resumable; filters and tenant scoping."""

from __future__ import annotations

import grpc
import pytest

from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from tests.support.credits import CreditsCompany, reason_of
from tests.support.events import refused, watch

pytestmark = pytest.mark.asyncio(loop_scope="session")

Request = pb.WatchEventsRequest


async def test_grants_usage_and_pooling_stream_in_order_and_resume_from_a_cursor(
    stub: credits_pb2_grpc.CreditsServiceStub, company: CreditsCompany
) -> None:
    await company.office("a")
    granted = await company.grant(pb.GRANT_TARGET_OFFICE_BALANCE, 100, "a")
    used = await company.use("a", 30)
    await company.pooling("USD")

    events, _ = await watch(stub, Request, company.company_id, until=3)

    assert [e.type for e in events] == [
        "credits.granted",
        "credits.usage.recorded",
        "credits.pooling.changed",
    ]
    assert events[0].data["grant_id"] == granted.grant.grant_id
    assert events[1].data["usage_id"] == used.usage_id
    assert events[1].data["split"]["office_balance"] == "30"
    usage_only, _ = await watch(
        stub, Request, company.company_id, types=["credits.usage.recorded"], until=1
    )
    assert [e.event_id for e in usage_only] == [events[1].event_id]
    resumed, _ = await watch(stub, Request, company.company_id, cursor=events[1].cursor, until=1)
    assert [e.event_id for e in resumed] == [events[2].event_id]


async def test_another_company_sees_none_of_them_and_may_not_use_their_cursor(
    stub: credits_pb2_grpc.CreditsServiceStub, company: CreditsCompany
) -> None:
    await company.office("a")
    await company.grant(pb.GRANT_TARGET_OFFICE_BALANCE, 100, "a")
    other = CreditsCompany(stub)
    theirs, _ = await watch(stub, Request, other.company_id)
    mine, cursor = await watch(stub, Request, company.company_id, until=1)
    assert theirs == []
    assert len(mine) == 1
    error = await refused(stub, Request(company_id=other.company_id, cursor=cursor))
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CURSOR")
    error = await refused(stub, Request(company_id=company.company_id, types=["pool.units.added"]))
    assert reason_of(error) == "UNKNOWN_EVENT_TYPE"
