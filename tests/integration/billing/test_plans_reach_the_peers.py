"""Billing with the real pool and credits services and PostgreSQL: plan changes reach the
pool's office facts and the credit account, a pool is previewed with the parity check in
one call, and an invoice carries unpriced lines and the credit overage (stored and read
back). docs/product.md, "Companies, offices and plans", "Pools", "Invoices"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask

from libs.common.clock import FakeClock
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.credits.v1 import credits_pb2 as cpb
from licensing.credits.v1 import credits_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp
from tests.support.billing import Shop, running_billing, ts
from tests.support.credits import reason_of, running_credits
from tests.support.pool import rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@dataclass
class Linked:
    shop: Shop
    credits: credits_pb2_grpc.CreditsServiceStub

    @property
    def company_id(self) -> str:
        return self.shop.company_id

    async def account(self, office: str) -> cpb.Account:
        response = await self.credits.GetAccount(
            cpb.GetAccountRequest(company_id=self.company_id, office_id=self.shop.offices[office])
        )
        account: cpb.Account = response.account
        return account

    async def pool_office(self, office: str) -> ppb.Office:
        response = await self.shop.pool.GetOffice(
            ppb.GetOfficeRequest(company_id=self.company_id, office_id=self.shop.offices[office])
        )
        found: ppb.Office = response.office
        return found

    async def update(self, office: str, paths: list[str], **values: object) -> bpb.Plan:
        response = await self.shop.billing.UpdatePlan(
            bpb.UpdatePlanRequest(
                request_id=rid(),
                plan=bpb.Plan(
                    company_id=self.company_id,
                    plan_id=self.shop.plans[office],
                    **values,  # type: ignore[arg-type]
                ),
                update_mask=FieldMask(paths=paths),
            )
        )
        plan: bpb.Plan = response.plan
        return plan


@pytest_asyncio.fixture(loop_scope="session")
async def linked(
    database_url: str,
    clock: FakeClock,
    pool_service: tuple[PoolApp, pool_pb2_grpc.PoolServiceStub],
) -> AsyncIterator[Linked]:
    async with (
        running_credits(database_url, clock) as (credits_app, credits),
        running_billing(
            database_url,
            f"127.0.0.1:{pool_service[0].port}",
            clock,
            credits_address=f"127.0.0.1:{credits_app.port}",
        ) as (_, billing),
    ):
        yield Linked(Shop(billing, pool_service[1]), credits)


async def failure(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code(), reason_of(caught.value)


async def test_a_plan_keeps_the_credit_account_but_not_its_overage_policy(
    linked: Linked,
) -> None:
    office_id = linked.shop.offices.setdefault("a", rid())
    # The operator's policy, set before the plan exists, survives what billing puts.
    await linked.credits.PutAccount(
        cpb.PutAccountRequest(
            request_id=rid(),
            account=cpb.Account(
                company_id=linked.company_id,
                office_id=office_id,
                currency="USD",
                overage_policy=cpb.OVERAGE_POLICY_REJECT,
            ),
        )
    )
    response = await linked.shop.billing.CreatePlan(
        bpb.CreatePlanRequest(
            request_id=rid(),
            plan=bpb.Plan(
                company_id=linked.company_id,
                office_id=office_id,
                kind=bpb.PLAN_KIND_BUNDLE,
                currency="USD",
                start_time=ts(JAN_1),
                primary=True,
                credit_allowance_minor=1200,
            ),
        )
    )
    linked.shop.plans["a"] = response.plan.plan_id
    assert response.plan.credit_allowance_minor == 1200
    account = await linked.account("a")
    assert (account.allowance_minor, account.primary) == (1200, True)
    assert account.period_anchor_time.ToDatetime(tzinfo=UTC) == JAN_1
    assert account.overage_policy == cpb.OVERAGE_POLICY_REJECT

    changed = await linked.update("a", ["credit_allowance_minor"], credit_allowance_minor=80)
    assert changed.credit_allowance_minor == 80
    assert (await linked.account("a")).allowance_minor == 80


async def test_deactivating_a_legacy_plan_lets_the_pool_be_enabled(linked: Linked) -> None:
    await linked.shop.plan("a", "EUR", {"connect": 100}, start=JAN_1)
    await linked.shop.plan("b", "EUR", {"connect": 100}, start=JAN_1, kind=bpb.PLAN_KIND_LEGACY)
    preview = await linked.shop.billing.PreviewEnablePool(
        bpb.PreviewEnablePoolRequest(company_id=linked.company_id, currency="EUR")
    )
    assert (preview.can_enable, preview.refusal_reason) == (False, "LEGACY_PLAN_IN_CURRENCY")

    await linked.update("b", ["active"], active=False)
    assert (await linked.pool_office("b")).plan_kind == ppb.PLAN_KIND_NONE
    assert (await linked.account("b")).allowance_minor == 0
    await linked.shop.enable("EUR")  # the deactivated legacy plan no longer blocks it

    # Once pooled, no plan of the currency may become legacy: the pool's reason, and
    # nothing changed in billing.
    assert await failure(linked.update("a", ["kind"], kind=bpb.PLAN_KIND_LEGACY)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "LEGACY_PLAN_IN_CURRENCY",
    )
    plan = await linked.shop.billing.GetPlan(
        bpb.GetPlanRequest(company_id=linked.company_id, plan_id=linked.shop.plans["a"])
    )
    assert plan.plan.kind == bpb.PLAN_KIND_BUNDLE
    assert (await linked.pool_office("a")).plan_kind == ppb.PLAN_KIND_BUNDLE
    assert await failure(
        linked.shop.plan("c", "EUR", {"connect": 100}, kind=bpb.PLAN_KIND_LEGACY)
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "LEGACY_PLAN_IN_CURRENCY")
    listed = await linked.shop.billing.ListPlans(
        bpb.ListPlansRequest(company_id=linked.company_id, office_id=linked.shop.offices["c"])
    )
    assert list(listed.plans) == []


async def test_a_primary_change_reaches_the_pool_and_credits(linked: Linked) -> None:
    await linked.shop.plan("a", "USD", {"connect": 100}, start=JAN_1, primary=True)
    await linked.shop.plan("b", "USD", {"connect": 100}, start=JAN_1)
    await linked.update("b", ["primary"], primary=True)
    assert [(await linked.pool_office(o)).primary for o in ("a", "b")] == [False, True]
    assert [(await linked.account(o)).primary for o in ("a", "b")] == [False, True]


async def test_the_pool_preview_comes_with_the_parity_check(linked: Linked) -> None:
    await linked.shop.plan("a", "GBP", {"connect": 100, "fax": 5}, start=JAN_1)
    await linked.shop.plan("b", "GBP", {"connect": 120, "fax": 5}, start=JAN_1)
    await linked.shop.add("a", "connect", 2)
    await linked.shop.add("b", "agentic_ai", 1)  # never poolable: stays with its office
    preview = await linked.shop.billing.PreviewEnablePool(
        bpb.PreviewEnablePoolRequest(company_id=linked.company_id, currency="GBP")
    )
    assert preview.can_enable
    assert [(e.office_id, e.license_type, e.quantity) for e in preview.entries] == [
        (linked.shop.offices["a"], "connect", 2)
    ]
    assert preview.entering_units == 2
    assert set(preview.office_ids) == set(linked.shop.offices.values())
    assert not preview.in_parity
    assert [m.license_type for m in preview.mismatches] == ["connect"]
    pool = await linked.shop.pool.GetPool(
        ppb.GetPoolRequest(company_id=linked.company_id, currency="GBP")
    )
    assert not pool.pool.enabled  # a preview changes nothing

    await linked.shop.enable("GBP")
    again = await linked.shop.billing.PreviewEnablePool(
        bpb.PreviewEnablePoolRequest(company_id=linked.company_id, currency="GBP")
    )
    assert (again.can_enable, again.refusal_reason) == (False, "POOL_ALREADY_ENABLED")
    assert await failure(
        linked.shop.billing.PreviewEnablePool(
            bpb.PreviewEnablePoolRequest(company_id=linked.company_id, currency="XXX")
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED_CURRENCY")


async def test_the_invoice_bills_the_overage_and_flags_unpriced_units(
    linked: Linked, clock: FakeClock
) -> None:
    await linked.shop.plan("a", "USD", {"connect": 1000}, start=JAN_1)
    await linked.update("a", ["credit_allowance_minor"], credit_allowance_minor=500)
    await linked.shop.add("a", "connect", 1)
    await linked.shop.add("a", "sell", 2)  # straight through the pool: no price
    used = await linked.credits.RecordUsage(
        cpb.RecordUsageRequest(
            request_id=rid(),
            company_id=linked.company_id,
            office_id=linked.shop.offices["a"],
            kind=cpb.USAGE_KIND_CALLING,
            amount_minor=800,
            occur_time=ts(datetime(2026, 1, 10, tzinfo=UTC)),
        )
    )
    assert used.usage.split.overage_minor == 300
    clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    closed = await linked.shop.billing.CloseCycle(
        bpb.CloseCycleRequest(request_id=rid(), company_id=linked.company_id, period="2026-01")
    )
    stored = await linked.shop.billing.GetInvoice(
        bpb.GetInvoiceRequest(company_id=linked.company_id, invoice_id=closed.invoice.invoice_id)
    )
    for invoice in (closed.invoice, stored.invoice):  # as made, and as read back
        assert {line.license_type: line.unpriced for line in invoice.lines} == {
            "connect": False,
            "sell": True,
        }
        assert invoice.unpriced_units == invoice.reconciliation.unpriced_units == 2
        assert invoice.reconciliation.balanced
        assert invoice.credit_overage_included
        (owed,) = invoice.credit_overages
        assert (owed.office_id, owed.plan_id) == (
            linked.shop.offices["a"],
            linked.shop.plans["a"],
        )
        assert owed.amount == bpb.Money(currency_code="USD", amount_minor=300)
        assert owed.period_start_time.ToDatetime(tzinfo=UTC) == JAN_1
        assert owed.period_end_time.ToDatetime(tzinfo=UTC) == FEB_1
        assert list(invoice.totals) == [bpb.Money(currency_code="USD", amount_minor=1300)]


async def test_a_plan_credits_refuses_leaves_the_pool_as_billing_has_it(linked: Linked) -> None:
    await linked.shop.plan("a", "USD", {"connect": 100}, start=JAN_1)
    office_id = linked.shop.offices["a"]
    await linked.credits.RecordUsage(  # ledger entries: the account's currency is fixed
        cpb.RecordUsageRequest(
            request_id=rid(),
            company_id=linked.company_id,
            office_id=office_id,
            kind=cpb.USAGE_KIND_CALLING,
            amount_minor=10,
            occur_time=ts(datetime(2026, 1, 10, tzinfo=UTC)),
        )
    )
    await linked.update("a", ["active"], active=False)
    assert await failure(linked.shop.plan("a", "EUR", {"connect": 100}, start=JAN_1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OFFICE_CURRENCY_LOCKED",
    )
    office = await linked.pool_office("a")
    assert (office.currency, office.plan_kind) == ("USD", ppb.PLAN_KIND_NONE)  # put back
    listed = await linked.shop.billing.ListPlans(
        bpb.ListPlansRequest(company_id=linked.company_id, office_id=office_id)
    )
    assert [(p.currency, p.active) for p in listed.plans] == [("USD", False)]
