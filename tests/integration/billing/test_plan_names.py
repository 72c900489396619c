"""Plans have names, set when created and changed by UpdatePlan with the name in the mask."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from licensing.billing.v1 import billing_pb2 as bpb
from tests.support.billing import Shop
from tests.support.pool import reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_plan_is_named_and_renamed_and_prices_change_by_mask(shop: Shop) -> None:
    plan = await shop.plan("hq", "USD", {"connect": 1500})
    assert plan.display_name == ""

    async def update(changes: bpb.Plan, *paths: str) -> bpb.Plan:
        changes.plan_id, changes.company_id = plan.plan_id, shop.company_id
        response = await shop.billing.UpdatePlan(
            bpb.UpdatePlanRequest(
                request_id=rid(), plan=changes, update_mask=FieldMask(paths=list(paths))
            )
        )
        return response.plan

    named = await update(bpb.Plan(display_name="Tokyo <standard>"), "display_name")
    assert named.display_name == "Tokyo <standard>"
    priced = await update(
        bpb.Plan(
            prices=[
                bpb.Price(
                    license_type="connect",
                    unit_price=bpb.Money(currency_code="USD", amount_minor=1500),
                ),
                bpb.Price(
                    license_type="sell", unit_price=bpb.Money(currency_code="USD", amount_minor=900)
                ),
            ]
        ),
        "prices",
    )
    assert priced.display_name == "Tokyo <standard>"  # not in the mask: kept
    assert {p.license_type: p.unit_price.amount_minor for p in priced.prices} == {
        "connect": 1500,
        "sell": 900,
    }
    got = await shop.billing.GetPlan(
        bpb.GetPlanRequest(company_id=shop.company_id, plan_id=plan.plan_id)
    )
    assert got.plan.display_name == "Tokyo <standard>"

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(bpb.Plan(display_name="x" * 201), "display_name")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "INVALID_FIELD"
