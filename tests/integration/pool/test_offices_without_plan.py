"""Offices whose plan billing deactivated (plan kind NONE) and the preview of enabling
a pool, against the real pool service (docs/product.md, "Pools")."""

from __future__ import annotations

import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pb
from tests.support.pool import Company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def put(company: Company, name: str, kind: int) -> pb.Office:
    response = await company.stub.PutOffice(
        pb.PutOfficeRequest(
            request_id=rid(),
            office=pb.Office(
                company_id=company.company_id,
                office_id=company.offices[name],
                currency="USD",
                plan_kind=kind,  # type: ignore[arg-type]
            ),
        )
    )
    office: pb.Office = response.office
    return office


async def test_an_office_without_a_plan_does_not_block_the_pool(company: Company) -> None:
    await company.office("a", "USD")
    await company.office("old", "USD", kind=pb.PLAN_KIND_LEGACY)
    await company.add("a", "connect", 2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.PreviewEnablePool(
            pb.PreviewEnablePoolRequest(company_id=company.company_id, currency="USD")
        )
    assert reason_of(caught.value) == "LEGACY_PLAN_IN_CURRENCY"

    assert (await put(company, "old", pb.PLAN_KIND_NONE)).plan_kind == pb.PLAN_KIND_NONE
    preview = await company.stub.PreviewEnablePool(
        pb.PreviewEnablePoolRequest(company_id=company.company_id, currency="USD")
    )
    validate_only = await company.stub.EnablePool(
        pb.EnablePoolRequest(
            request_id=rid(), company_id=company.company_id, currency="USD", validate_only=True
        )
    )
    assert preview.preview == validate_only  # the same answer, for callers who may only look
    assert [(m.office_id, m.quantity) for m in preview.preview.moved] == [(company.offices["a"], 2)]
    assert (await company.units(state=pb.UNIT_STATE_POOLED)) == []  # nothing moved
    await company.enable("USD")
    # Once pooled, the office may go without a plan again, but not onto a legacy one.
    await put(company, "a", pb.PLAN_KIND_NONE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await put(company, "a", pb.PLAN_KIND_LEGACY)
    assert reason_of(caught.value) == "LEGACY_PLAN_IN_CURRENCY"
