"""Bad input gets a clear error with a reason, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from services.credits.domain.model import MAX_AMOUNT
from tests.support.credits import CreditsCompany, reason_of, rid, ts

pytestmark = pytest.mark.asyncio(loop_scope="session")

Edit = Callable[[pb.RecordUsageRequest, CreditsCompany], None]


def _set(**fields: object) -> Edit:
    def edit(request: pb.RecordUsageRequest, company: CreditsCompany) -> None:
        for name, value in fields.items():
            setattr(request, name, value)

    return edit


def _future(request: pb.RecordUsageRequest, company: CreditsCompany) -> None:
    request.occur_time.CopyFrom(ts(datetime(2026, 1, 15, 12, tzinfo=UTC) + timedelta(hours=1)))


def _ancient(request: pb.RecordUsageRequest, company: CreditsCompany) -> None:
    request.occur_time.seconds = 1


BAD_USAGE = [
    ("negative amount", _set(amount_minor=-5), "INVALID_AMOUNT"),
    ("zero amount", _set(amount_minor=0), "INVALID_AMOUNT"),
    ("huge amount", _set(amount_minor=MAX_AMOUNT + 1), "AMOUNT_TOO_LARGE"),
    ("int64 max", _set(amount_minor=2**63 - 1), "AMOUNT_TOO_LARGE"),
    ("unknown kind", _set(kind=99), "UNKNOWN_USAGE_KIND"),
    ("no kind", _set(kind=0), "MISSING_FIELD"),
    ("unsupported currency", _set(currency="XYZ"), "UNSUPPORTED_CURRENCY"),
    ("other currency", _set(currency="EUR"), "CURRENCY_MISMATCH"),
    ("malformed office", _set(office_id="not-a-uuid"), "MALFORMED_ID"),
    ("malformed company", _set(company_id="nope"), "MALFORMED_ID"),
    ("no request_id", _set(request_id=""), "INVALID_FIELD"),
    ("long request_id", _set(request_id="x" * 500), "INVALID_FIELD"),
    ("future", _future, "OCCURRED_IN_FUTURE"),
    ("before 2000", _ancient, "INVALID_TIME"),
]


async def _state(company: CreditsCompany) -> tuple[object, ...]:
    balances = await company.balances()
    return (
        tuple(await company.entries()),
        tuple(await company.usage()),
        tuple(balances.offices),
        tuple(balances.company_pools),
    )


@pytest.mark.parametrize(("case", "edit", "reason"), BAD_USAGE, ids=[c[0] for c in BAD_USAGE])
async def test_bad_usage_is_invalid_argument_and_writes_nothing(
    company: CreditsCompany, clock: FakeClock, case: str, edit: Edit, reason: str
) -> None:
    await company.office("a", allowance=100)
    await company.grant(pb.GRANT_TARGET_OFFICE_BALANCE, 100, office="a")
    before = await _state(company)
    request = company.usage_request("a", 10)
    edit(request, company)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.RecordUsage(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert reason_of(caught.value) == reason
    assert caught.value.details()
    assert await _state(company) == before
    assert (await company.check()).consistent


async def test_unknown_office_is_not_found(company: CreditsCompany) -> None:
    await company.office("a")
    request = company.usage_request("a", 10)
    request.office_id = rid()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.RecordUsage(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(caught.value) == "OFFICE_NOT_FOUND"


async def test_another_companys_office_is_not_found(company: CreditsCompany, stub: object) -> None:
    await company.office("a")
    other = CreditsCompany(company.stub)
    other.offices["a"] = company.offices["a"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other.use("a", 10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other.office("a")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await other.balances()).offices == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"amount_minor": -1}, "INVALID_AMOUNT"),
        ({"amount_minor": MAX_AMOUNT + 1}, "AMOUNT_TOO_LARGE"),
        ({"target": 0}, "MISSING_FIELD"),
        ({"target": 42}, "INVALID_FIELD"),
        ({"currency": "BTC"}, "UNSUPPORTED_CURRENCY"),
        ({"currency": "", "target": pb.GRANT_TARGET_COMPANY_POOL}, "MISSING_FIELD"),
        ({"note": "n" * 300}, "INVALID_FIELD"),
    ],
)
async def test_bad_grants(company: CreditsCompany, fields: dict[str, object], reason: str) -> None:
    await company.office("a")
    request = pb.GrantCreditsRequest(
        request_id=rid(),
        company_id=company.company_id,
        target=pb.GRANT_TARGET_COMPANY_POOL,
        currency="USD",
        amount_minor=10,
    )
    for name, value in fields.items():
        setattr(request, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.GrantCredits(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == reason
    assert await company.entries() == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"allowance_minor": -1}, "INVALID_AMOUNT"),
        ({"allowance_minor": MAX_AMOUNT + 1}, "AMOUNT_TOO_LARGE"),
        ({"currency": "usd"}, "UNSUPPORTED_CURRENCY"),
        ({"currency": ""}, "MISSING_FIELD"),
        ({"overage_policy": 7}, "INVALID_FIELD"),
        ({"office_id": "x"}, "MALFORMED_ID"),
    ],
)
async def test_bad_accounts(
    company: CreditsCompany, fields: dict[str, object], reason: str
) -> None:
    account = pb.Account(company_id=company.company_id, office_id=rid(), currency="USD")
    for name, value in fields.items():
        setattr(account, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.PutAccount(pb.PutAccountRequest(request_id=rid(), account=account))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == reason
    listed = await company.stub.ListAccounts(pb.ListAccountsRequest(company_id=company.company_id))
    assert list(listed.accounts) == []


async def test_batch_reports_bad_records_one_by_one(company: CreditsCompany) -> None:
    await company.office("a", allowance=100)
    good = company.usage_request("a", 10)
    negative = company.usage_request("a", -1)
    other_company = company.usage_request("a", 10)
    other_company.company_id = rid()
    response = await company.stub.BatchRecordUsage(
        pb.BatchRecordUsageRequest(
            company_id=company.company_id, requests=[good, negative, other_company]
        )
    )
    kinds = [r.WhichOneof("result") for r in response.results]
    assert kinds == ["usage", "error", "error"]
    assert response.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert response.results[1].error.reason == "INVALID_AMOUNT"
    assert response.results[1].error.metadata["field"] == "requests[1].amount_minor"
    assert len(await company.usage()) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.BatchRecordUsage(
            pb.BatchRecordUsageRequest(company_id=company.company_id)
        )
    assert reason_of(caught.value) == "MISSING_FIELD"


async def test_bad_page_tokens_and_filters(company: CreditsCompany) -> None:
    for request, reason in [
        (pb.ListUsageRequest(company_id=company.company_id, page_token="garbage"), "INVALID_FIELD"),
        (pb.ListUsageRequest(company_id=company.company_id, page_size=-1), "INVALID_FIELD"),
        (pb.ListUsageRequest(company_id=company.company_id, kind=77), "UNKNOWN_USAGE_KIND"),  # type: ignore[arg-type]
        (pb.ListUsageRequest(company_id=""), "MISSING_FIELD"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await company.stub.ListUsage(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(caught.value) == reason
