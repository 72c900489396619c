"""What billing reads and writes of credits: the overage of each office's periods that
start in a range (GetPeriodOverage), and a PutAccount that changes only the fields its
update mask names (billing keeps the plan's facts, the operator the overage policy)."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from tests.support.credits import CreditsCompany, reason_of, rid, ts

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_15 = datetime(2026, 1, 15, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
FEB_15 = datetime(2026, 2, 15, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


async def overage(
    company: CreditsCompany, start: datetime, end: datetime
) -> list[tuple[str, datetime, int, int]]:
    response = await company.stub.GetPeriodOverage(
        pb.GetPeriodOverageRequest(
            company_id=company.company_id, start_time=ts(start), end_time=ts(end)
        )
    )
    return [
        (o.office_id, o.period_start_time.ToDatetime(UTC), o.overage_minor, o.record_count)
        for o in response.overages
    ]


async def test_the_overage_of_the_periods_that_start_in_the_range(
    company: CreditsCompany, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 2, 20, tzinfo=UTC))
    a = await company.office("a", allowance=100, anchor=JAN_1)
    b = await company.office("b", allowance=0, anchor=JAN_15)  # its own anchor
    await company.use("a", 150, at=datetime(2026, 1, 5, tzinfo=UTC))  # 50 over
    await company.use("a", 30, at=datetime(2026, 1, 6, tzinfo=UTC))  # 30 over
    await company.use("a", 90, at=datetime(2026, 1, 7, tzinfo=UTC))  # nothing left: 90 over
    await company.use("a", 120, at=datetime(2026, 2, 3, tzinfo=UTC))  # February: 20 over
    await company.use("b", 40, at=datetime(2026, 1, 20, tzinfo=UTC))  # period from Jan 15
    await company.use("b", 7, at=datetime(2026, 1, 10, tzinfo=UTC))  # period from Dec 15
    assert await overage(company, JAN_1, FEB_1) == sorted([(a, JAN_1, 170, 3), (b, JAN_15, 40, 1)])
    assert await overage(company, FEB_1, MAR_1) == [(a, FEB_1, 20, 1)]
    other = CreditsCompany(company.stub)
    assert await overage(other, JAN_1, FEB_1) == []  # another company sees none of it
    assert await overage(company, FEB_15, MAR_1) == []  # b's Feb 15 period has none yet


async def test_a_range_must_be_given_and_bounded(company: CreditsCompany) -> None:
    cases = [
        pb.GetPeriodOverageRequest(company_id=company.company_id, end_time=ts(FEB_1)),
        pb.GetPeriodOverageRequest(company_id=company.company_id, start_time=ts(JAN_1)),
        pb.GetPeriodOverageRequest(
            company_id=company.company_id, start_time=ts(FEB_1), end_time=ts(JAN_1)
        ),
        pb.GetPeriodOverageRequest(
            company_id=company.company_id,
            start_time=ts(JAN_1),
            end_time=ts(datetime(2027, 6, 1, tzinfo=UTC)),
        ),
        pb.GetPeriodOverageRequest(company_id="nope", start_time=ts(JAN_1), end_time=ts(FEB_1)),
    ]
    for request in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await company.stub.GetPeriodOverage(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request


async def test_an_update_mask_changes_only_the_fields_it_names(company: CreditsCompany) -> None:
    office_id = await company.office("a", allowance=100, policy=pb.OVERAGE_POLICY_REJECT)
    masked = pb.PutAccountRequest(
        request_id=rid(),
        account=pb.Account(
            company_id=company.company_id,
            office_id=office_id,
            currency="USD",
            primary=True,
            allowance_minor=900,
            period_anchor_time=ts(JAN_15),
        ),
        update_mask=FieldMask(paths=["primary", "allowance_minor", "period_anchor_time"]),
    )
    saved = (await company.stub.PutAccount(masked)).account
    assert (saved.allowance_minor, saved.primary) == (900, True)
    assert saved.period_anchor_time.ToDatetime(UTC) == JAN_15
    assert saved.overage_policy == pb.OVERAGE_POLICY_REJECT  # not named: kept

    # A new account takes the request as given, the mask notwithstanding.
    fresh = pb.PutAccountRequest(
        request_id=rid(),
        account=pb.Account(
            company_id=company.company_id, office_id=rid(), currency="JPY", allowance_minor=5
        ),
        update_mask=FieldMask(paths=["overage_policy"]),
    )
    created = (await company.stub.PutAccount(fresh)).account
    assert (created.currency, created.allowance_minor) == ("JPY", 5)

    wrong = pb.PutAccountRequest(
        request_id=rid(), account=masked.account, update_mask=FieldMask(paths=["ledger"])
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.PutAccount(wrong)
    assert (caught.value.code(), reason_of(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
