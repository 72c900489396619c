"""300 concurrent usage records from 3 offices against one shared pool, over real gRPC,
split across two replicas of the service on the same database."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from tests.support.credits import CreditsCompany, reason_of, running_credits

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

OFFICES = ("a", "b", "c")


@pytest_asyncio.fixture(loop_scope="session")
async def second_replica(
    database_url: str, clock: FakeClock
) -> AsyncIterator[credits_pb2_grpc.CreditsServiceStub]:
    async with running_credits(database_url, clock) as (_, stub):
        yield stub


async def _record_all(
    company: CreditsCompany,
    replicas: list[credits_pb2_grpc.CreditsServiceStub],
    requests: list[pb.RecordUsageRequest],
) -> list[pb.UsageRecord | grpc.aio.AioRpcError]:
    async def one(
        index: int, request: pb.RecordUsageRequest
    ) -> pb.UsageRecord | grpc.aio.AioRpcError:
        try:
            response = await replicas[index % len(replicas)].RecordUsage(request, timeout=60)
        except grpc.aio.AioRpcError as error:
            return error
        usage: pb.UsageRecord = response.usage
        return usage

    return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))


async def _assert_books_balance(company: CreditsCompany, total: int) -> None:
    check = await company.check()
    assert check.consistent, check.violations
    totals = await company.stub.GetUsageTotals(
        pb.GetUsageTotalsRequest(company_id=company.company_id)
    )
    assert [t.amount_minor for t in totals.company_totals] == [total]
    assert sum(t.amount_minor for t in totals.office_totals) == total
    for field in ("allowance_minor", "company_pool_minor", "overage_minor"):
        assert sum(getattr(t.split, field) for t in totals.office_totals) == getattr(
            totals.company_totals[0].split, field
        )
    balances = await company.balances("USD")
    assert all(o.allowance_remaining_minor >= 0 for o in balances.offices)
    assert balances.company_pools[0].balance_minor >= 0
    assert sum(o.consumed_minor for o in balances.offices) == total


async def test_exactly_the_affordable_usages_draw_from_the_pool(
    company: CreditsCompany, second_replica: credits_pb2_grpc.CreditsServiceStub
) -> None:
    for name in OFFICES:
        await company.office(name, allowance=50, policy=pb.OVERAGE_POLICY_REJECT)
    await company.pooling("USD")
    await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 1000, currency="USD")
    requests = [company.usage_request(OFFICES[i % 3], 10) for i in range(300)]
    results = await _record_all(company, [company.stub, second_replica], requests)

    recorded = [r for r in results if isinstance(r, pb.UsageRecord)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert {reason_of(e) for e in refused} == {"INSUFFICIENT_CREDITS"}
    # 3 x 50 of allowance and 1000 of pool: 115 usages of 10 are affordable, no more.
    assert len(recorded) == 115
    assert sum(r.split.company_pool_minor for r in recorded) == 1000
    assert sum(r.split.allowance_minor for r in recorded) == 150
    assert all(r.split.overage_minor == 0 for r in recorded)
    for name in OFFICES:
        office_id = company.offices[name]
        assert sum(r.split.allowance_minor for r in recorded if r.office_id == office_id) == 50
    assert await company.pool_balance() == 0
    await _assert_books_balance(company, 1150)


async def test_with_overage_allowed_the_pool_is_drawn_to_exactly_zero(
    company: CreditsCompany, second_replica: credits_pb2_grpc.CreditsServiceStub
) -> None:
    for name in OFFICES:
        await company.office(name, allowance=100)
    await company.pooling("USD")
    await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 2500, currency="USD")
    rng = random.Random(4)
    requests = [company.usage_request(OFFICES[i % 3], rng.randint(1, 30)) for i in range(300)]
    total = sum(r.amount_minor for r in requests)
    results = await _record_all(company, [company.stub, second_replica], requests)
    assert all(isinstance(r, pb.UsageRecord) for r in results)
    recorded = [r for r in results if isinstance(r, pb.UsageRecord)]
    assert sum(r.split.allowance_minor for r in recorded) == 300
    assert sum(r.split.company_pool_minor for r in recorded) == 2500
    assert sum(r.split.overage_minor for r in recorded) == total - 2800
    assert await company.pool_balance() == 0
    listed = await company.usage()
    assert len(listed) == 300
    await _assert_books_balance(company, total)


async def test_batch_endpoint_under_concurrency(
    company: CreditsCompany, second_replica: credits_pb2_grpc.CreditsServiceStub
) -> None:
    for name in OFFICES:
        await company.office(name, policy=pb.OVERAGE_POLICY_REJECT)
    await company.pooling("USD")
    await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 500, currency="USD")
    requests = [company.usage_request(OFFICES[i % 3], 5) for i in range(300)]
    chunks = [requests[i : i + 50] for i in range(0, 300, 50)]
    stubs = [company.stub, second_replica]
    responses = await asyncio.gather(
        *(
            stubs[i % 2].BatchRecordUsage(
                pb.BatchRecordUsageRequest(company_id=company.company_id, requests=chunk)
            )
            for i, chunk in enumerate(chunks)
        )
    )
    results = [r for response in responses for r in response.results]
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    ok = [r for r in results if r.WhichOneof("result") == "usage"]
    assert len(ok) == 100
    assert {r.error.reason for r in results if r.WhichOneof("result") == "error"} == {
        "INSUFFICIENT_CREDITS"
    }
    await _assert_books_balance(company, 500)
