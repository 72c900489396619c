"""request_id idempotency: the same usage id twice is one debit, whatever the timing."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from licensing.credits.v1 import credits_pb2 as pb
from tests.support.credits import CreditsCompany, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _setup(company: CreditsCompany) -> None:
    await company.office("a", allowance=0)
    await company.pooling("USD")
    await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 1000, currency="USD")


async def test_sequential_replay_is_one_debit(company: CreditsCompany) -> None:
    await _setup(company)
    request_id = rid()
    first = await company.use("a", 100, request_id=request_id)
    entries = await company.entries()
    again = await company.use("a", 100, request_id=request_id)
    assert again == first
    assert await company.entries() == entries
    assert await company.pool_balance() == 900
    assert len(await company.usage()) == 1


async def test_concurrent_replays_are_one_debit(company: CreditsCompany) -> None:
    await _setup(company)
    request = company.usage_request("a", 100)
    responses = await asyncio.gather(*(company.stub.RecordUsage(request) for _ in range(25)))
    assert len({r.usage.usage_id for r in responses}) == 1
    assert await company.pool_balance() == 900
    assert len(await company.usage()) == 1
    assert (await company.check()).consistent


async def test_batch_and_single_share_the_usage_id(company: CreditsCompany) -> None:
    await _setup(company)
    request = company.usage_request("a", 100)
    single = await company.stub.RecordUsage(request)
    batch = await company.stub.BatchRecordUsage(
        pb.BatchRecordUsageRequest(company_id=company.company_id, requests=[request, request])
    )
    assert [r.usage for r in batch.results] == [single.usage, single.usage]
    assert await company.pool_balance() == 900


async def test_same_id_other_payload_is_refused(company: CreditsCompany) -> None:
    await _setup(company)
    request_id = rid()
    await company.use("a", 100, request_id=request_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.use("a", 101, request_id=request_id)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "REQUEST_ID_REUSED"
    assert await company.pool_balance() == 900


async def test_a_refused_usage_can_be_retried_after_a_top_up(company: CreditsCompany) -> None:
    await company.office("a", policy=pb.OVERAGE_POLICY_REJECT)
    request_id = rid()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.use("a", 100, request_id=request_id)
    assert reason_of(caught.value) == "INSUFFICIENT_CREDITS"
    await company.grant(pb.GRANT_TARGET_OFFICE_BALANCE, 100, office="a")
    used = await company.use("a", 100, request_id=request_id)
    assert used.split.office_balance_minor == 100


async def test_grant_and_pooling_replays(company: CreditsCompany) -> None:
    await company.office("a")
    request_id = rid()
    first = await company.grant(pb.GRANT_TARGET_OFFICE_BALANCE, 70, "a", request_id=request_id)
    again = await company.grant(pb.GRANT_TARGET_OFFICE_BALANCE, 70, "a", request_id=request_id)
    assert again == first
    assert (await company.office_balance("a")).balance_minor == 70
    on = pb.SetCreditPoolingRequest(
        request_id=rid(), company_id=company.company_id, currency="USD", enabled=True
    )
    replies = await asyncio.gather(*(company.stub.SetCreditPooling(on) for _ in range(5)))
    assert all(r == replies[0] for r in replies)
    assert await company.pool_balance() == 70
