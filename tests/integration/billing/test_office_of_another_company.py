"""Quotes, purchases and removals name an office: another company's office is NOT_FOUND
(to the caller it does not exist), an office of the caller's own company without an
active plan is NO_ACTIVE_PLAN. Either way nothing is written."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from licensing.billing.v1 import billing_pb2 as bpb
from tests.support.billing import Shop
from tests.support.pool import reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)

Call = Callable[[Shop, str], Awaitable[object]]


async def quote(shop: Shop, office_id: str) -> object:
    return await shop.billing.QuoteLicensePurchase(
        bpb.QuoteLicensePurchaseRequest(
            company_id=shop.company_id, office_id=office_id, license_type="connect", quantity=2
        )
    )


async def held_quote(shop: Shop, office_id: str) -> object:
    return await shop.billing.QuoteLicensePurchase(
        bpb.QuoteLicensePurchaseRequest(
            request_id=rid(),
            company_id=shop.company_id,
            office_id=office_id,
            license_type="connect",
            quantity=2,
            hold=True,
        )
    )


async def purchase(shop: Shop, office_id: str) -> object:
    return await shop.billing.PurchaseLicenses(
        bpb.PurchaseLicensesRequest(
            request_id=rid(),
            company_id=shop.company_id,
            office_id=office_id,
            license_type="connect",
            quantity=2,
        )
    )


async def removal(shop: Shop, office_id: str) -> object:
    return await shop.billing.ScheduleRemoval(
        bpb.ScheduleRemovalRequest(
            request_id=rid(),
            company_id=shop.company_id,
            office_id=office_id,
            license_type="connect",
            quantity=1,
        )
    )


CALLS = [quote, held_quote, purchase, removal]


async def written(db: asyncpg.Pool, *shops: Shop) -> dict[str, int]:
    """Rows the companies have in the tables these calls write (billing and pool)."""
    companies = [uuid.UUID(s.company_id) for s in shops]
    tables = [
        "billing.purchases",
        "billing.quotes",
        "billing.idempotency_keys",
        "pool.holds",
        "pool.units",
        "pool.idempotency_keys",
    ]
    return {
        t: await db.fetchval(f"SELECT count(*) FROM {t} WHERE company_id = ANY($1)", companies)
        for t in tables
    }


async def deactivate(shop: Shop, name: str) -> None:
    await shop.billing.UpdatePlan(
        bpb.UpdatePlanRequest(
            request_id=rid(),
            plan=bpb.Plan(company_id=shop.company_id, plan_id=shop.plans[name], active=False),
            update_mask=FieldMask(paths=["active"]),
        )
    )


@pytest.fixture
def other(shop: Shop) -> Shop:
    """Another company on the same services."""
    return Shop(shop.billing, shop.pool)


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.__name__)
async def test_another_company_s_office_is_not_found(
    shop: Shop, other: Shop, db: asyncpg.Pool, call: Call
) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.plan("closed", "USD", {"connect": 1000}, JAN_1)
    await deactivate(shop, "closed")
    await other.plan("mine", "USD", {"connect": 1000}, JAN_1)
    await shop.add("a", "connect", 2)
    before = await written(db, shop, other)
    states = await shop.states("a")
    # An office with an active plan, and one whose plan ended: both another company's.
    for office_id in (shop.offices["a"], shop.offices["closed"]):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(other, office_id)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert reason_of(caught.value) == "OFFICE_NOT_FOUND"
    assert await written(db, shop, other) == before
    assert await shop.states("a") == states
    assert await other.purchases() == []


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.__name__)
async def test_own_office_without_an_active_plan_has_no_active_plan(
    shop: Shop, db: asyncpg.Pool, call: Call
) -> None:
    await shop.plan("closed", "USD", {"connect": 1000}, JAN_1)
    await deactivate(shop, "closed")
    await shop.add("closed", "connect", 2)
    before = await written(db, shop)
    states = await shop.states("closed")
    # An office whose plan ended, and one no plan ever named (billing cannot tell it from
    # an office the pool knows that has no plan yet).
    for office_id in (shop.offices["closed"], str(uuid.uuid4())):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(shop, office_id)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(caught.value) == "NO_ACTIVE_PLAN"
    assert await written(db, shop) == before
    assert await shop.states("closed") == states
    assert await shop.purchases() == []
