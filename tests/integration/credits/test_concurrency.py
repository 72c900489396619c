"""300 concurrent usage records from 3 offices against one shared pool, over real gRPC,
split across two replicas of the service on the same database."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from tests.support.credits import (
    RACE_OFFICES,
    CreditsCompany,
    assert_books_balance,
    assert_exactly_the_affordable_usages_recorded,
    record_all,
    running_credits,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(loop_scope="session")
async def second_replica(
    database_url: str, clock: FakeClock
) -> AsyncIterator[credits_pb2_grpc.CreditsServiceStub]:
    async with running_credits(database_url, clock) as (_, stub):
        yield stub


async def test_exactly_the_affordable_usages_draw_from_the_pool(
    company: CreditsCompany, second_replica: credits_pb2_grpc.CreditsServiceStub
) -> None:
    await assert_exactly_the_affordable_usages_recorded(company, [company.stub, second_replica])


async def test_with_overage_allowed_the_pool_is_drawn_to_exactly_zero(
    company: CreditsCompany, second_replica: credits_pb2_grpc.CreditsServiceStub
) -> None:
    for name in RACE_OFFICES:
        await company.office(name, allowance=100)
    await company.pooling("USD")
    await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 2500, currency="USD")
    rng = random.Random(4)
    requests = [company.usage_request(RACE_OFFICES[i % 3], rng.randint(1, 30)) for i in range(300)]
    total = sum(r.amount_minor for r in requests)
    results = await record_all(company, [company.stub, second_replica], requests)
    assert all(isinstance(r, pb.UsageRecord) for r in results)
    recorded = [r for r in results if isinstance(r, pb.UsageRecord)]
    assert sum(r.split.allowance_minor for r in recorded) == 300
    assert sum(r.split.company_pool_minor for r in recorded) == 2500
    assert sum(r.split.overage_minor for r in recorded) == total - 2800
    assert await company.pool_balance() == 0
    listed = await company.usage()
    assert len(listed) == 300
    await assert_books_balance(company, total)


async def test_batch_endpoint_under_concurrency(
    company: CreditsCompany, second_replica: credits_pb2_grpc.CreditsServiceStub
) -> None:
    for name in RACE_OFFICES:
        await company.office(name, policy=pb.OVERAGE_POLICY_REJECT)
    await company.pooling("USD")
    await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 500, currency="USD")
    requests = [company.usage_request(RACE_OFFICES[i % 3], 5) for i in range(300)]
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
    await assert_books_balance(company, 500)
