"""request_id idempotency (docs/product.md, "Behaviour every endpoint shares") on real gRPC
and PostgreSQL."""

import asyncio

import asyncpg
import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pb
from tests.support.pool import Company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_same_acquire_twice_in_sequence_allocates_once(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 5)
    request_id = rid()
    first = await company.acquire("a", "connect", 2, request_id=request_id)
    second = await company.acquire("a", "connect", 2, request_id=request_id)
    assert first == second
    assert len(await company.units(state=pb.UNIT_STATE_ASSIGNED)) == 2


async def test_ten_concurrent_replays_allocate_once(company: Company, db: asyncpg.Pool) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 5)
    request_id = rid()
    responses = await asyncio.gather(
        *(company.acquire("a", "connect", 1, request_id=request_id) for _ in range(10))
    )
    assert all(r == responses[0] for r in responses)
    assert len(await company.units(state=pb.UNIT_STATE_ASSIGNED)) == 1
    receipts = await db.fetchval(
        "SELECT count(*) FROM pool.receipts WHERE company_id = $1::uuid", company.company_id
    )
    assert receipts == 1


async def test_same_id_other_payload_is_refused_and_changes_nothing(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 5)
    request_id = rid()
    await company.acquire("a", "connect", 1, request_id=request_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("a", "connect", 2, request_id=request_id)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "REQUEST_ID_REUSED"
    assert len(await company.units(state=pb.UNIT_STATE_ASSIGNED)) == 1


async def test_concurrent_same_id_different_payloads_one_effect(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 10)
    request_id = rid()
    results = await asyncio.gather(
        *(company.acquire("a", "connect", n, request_id=request_id) for n in (1, 2, 3)),
        return_exceptions=True,
    )
    successes = [r for r in results if isinstance(r, pb.AcquireResponse)]
    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(successes) == 1
    assert len(failures) == 2
    assert {reason_of(f) for f in failures} == {"REQUEST_ID_REUSED"}
    assigned = await company.units(state=pb.UNIT_STATE_ASSIGNED)
    assert len(assigned) == len(successes[0].units)


async def test_failed_request_is_not_remembered(company: Company) -> None:
    await company.office("a", "USD")
    request_id = rid()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.acquire("a", "connect", 1, request_id=request_id)
    assert reason_of(caught.value) == "NO_LICENSE_AVAILABLE"
    await company.add("a", "connect", 1)
    got = await company.acquire("a", "connect", 1, request_id=request_id)
    assert len(got.units) == 1


async def test_replayed_return_and_commit_have_one_effect(company: Company) -> None:
    await company.office("a", "USD")
    await company.add("a", "connect", 2)
    await company.enable("USD")
    held = await company.stub.Reserve(
        pb.ReserveRequest(
            request_id=rid(),
            company_id=company.company_id,
            office_id=company.offices["a"],
            license_type="connect",
            quantity=1,
        )
    )
    commit = pb.CommitRequest(
        request_id=rid(), company_id=company.company_id, hold_id=held.hold.hold_id
    )
    first, second = await asyncio.gather(company.stub.Commit(commit), company.stub.Commit(commit))
    assert first == second
    give_back = pb.ReturnUnitsRequest(
        request_id=rid(), company_id=company.company_id, unit_ids=list(held.hold.unit_ids)
    )
    a = await company.stub.ReturnUnits(give_back)
    b = await company.stub.ReturnUnits(give_back)
    assert a == b
    assert a.units[0].state == pb.UNIT_STATE_POOLED
