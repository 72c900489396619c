"""Plan changes reach the peers (docs/product.md, "Companies, offices and plans"): the
pool's office facts and the credit account follow the office's active plan, a peer's
refusal comes before anything is recorded, and a pool is previewed with the parity
check in one call."""

from __future__ import annotations

import uuid

import pytest

from libs.common.errors import DomainError, Unavailable
from libs.common.reasons import Reason
from services.billing.domain.model import Plan, PlanKind
from services.billing.use_cases import plans
from tests.fakes.billing import CreditAccount, FakeCredits
from tests.unit.billing.conftest import JAN_1, Shop


@pytest.fixture
def credits() -> FakeCredits:
    return FakeCredits()


async def new(
    shop: Shop,
    credits: FakeCredits,
    name: str,
    kind: PlanKind = PlanKind.BUNDLE,
    prices: dict[str, int] | None = None,
    allowance: int = 0,
    primary: bool = False,
) -> Plan:
    office_id = shop.offices.setdefault(name, uuid.uuid4())
    command = plans.NewPlan(
        company_id=shop.company_id,
        request_id=str(uuid.uuid4()),
        office_id=office_id,
        kind=kind,
        currency="USD",
        prices=prices if prices is not None else {"connect": 1000},
        contracted=False,
        start_at=JAN_1,
        primary=primary,
        credit_allowance=allowance,
    )
    plan = await plans.new_plan(command, shop.uow, shop.pool, credits)
    async with shop.uow.transaction() as tx:
        return await plans.add_plan(plan, tx)


async def change(
    shop: Shop, credits: FakeCredits, plan: Plan, request_id: str = "", **changes: object
) -> Plan:
    command = plans.PlanChanges(
        shop.company_id,
        request_id or str(uuid.uuid4()),
        plan.plan_id,
        **changes,  # type: ignore[arg-type]
    )
    changed = await plans.changed_plan(command, shop.uow, shop.pool, credits)
    async with shop.uow.transaction() as tx:
        return await plans.save_plan(changed, tx)


async def reason_of(call: object) -> str:
    with pytest.raises(DomainError) as caught:
        await call  # type: ignore[misc]
    return caught.value.reason


def stored(shop: Shop, plan: Plan) -> Plan:
    return shop.uow.state.plans[plan.plan_id]


async def test_a_new_plan_opens_the_credit_account_with_its_allowance(
    shop: Shop, credits: FakeCredits
) -> None:
    await new(shop, credits, "b", allowance=2500, primary=True)
    account = credits.accounts[(shop.company_id, shop.offices["b"])]
    assert account == CreditAccount("USD", True, 2500, JAN_1)
    assert shop.pool.offices[(shop.company_id, shop.offices["b"])].primary


async def test_deactivating_a_plan_leaves_the_office_without_plan_kind_or_allowance(
    shop: Shop, credits: FakeCredits
) -> None:
    plan = await new(shop, credits, "b", kind=PlanKind.LEGACY, allowance=900)
    await change(shop, credits, plan, active=False)
    key = (shop.company_id, shop.offices["b"])
    assert shop.pool.offices[key].kind is None  # NONE: outside the legacy-plan rules
    assert credits.accounts[key].allowance == 0
    preview = await plans.preview_enable_pool(shop.company_id, "USD", shop.uow, shop.pool)
    assert preview.pool.refusal_reason == ""  # the legacy plan no longer blocks the pool


async def test_kind_primary_and_allowance_changes_reach_both_peers(
    shop: Shop, credits: FakeCredits
) -> None:
    plan = await new(shop, credits, "b")
    plan = await change(shop, credits, plan, kind=PlanKind.LEGACY, primary=True)
    plan = await change(shop, credits, plan, credit_allowance=700)
    key = (shop.company_id, shop.offices["b"])
    office = shop.pool.offices[key]
    assert (office.kind, office.primary) == (PlanKind.LEGACY, True)
    assert (credits.accounts[key].primary, credits.accounts[key].allowance) == (True, 700)
    assert stored(shop, plan).credit_allowance == 700


async def test_a_legacy_plan_in_a_pooled_currency_is_refused_with_the_pools_reason(
    shop: Shop, credits: FakeCredits
) -> None:
    plan = await new(shop, credits, "b")
    shop.enable()
    credits.calls.clear()
    assert await reason_of(change(shop, credits, plan, kind=PlanKind.LEGACY)) == (
        "LEGACY_PLAN_IN_CURRENCY"
    )
    assert stored(shop, plan).kind is PlanKind.BUNDLE
    assert await reason_of(new(shop, credits, "c", kind=PlanKind.LEGACY)) == (
        "LEGACY_PLAN_IN_CURRENCY"
    )
    assert credits.calls == []  # refused before the credit account changed
    assert not any(p.office_id == shop.offices["c"] for p in shop.uow.state.plans.values())


async def test_a_change_of_a_plan_that_is_not_the_offices_tells_no_peer(
    shop: Shop, credits: FakeCredits
) -> None:
    old = await new(shop, credits, "b")
    old = await change(shop, credits, old, active=False)
    await new(shop, credits, "b", kind=PlanKind.LEGACY, allowance=300)
    shop.pool.calls.clear()
    credits.calls.clear()
    await change(shop, credits, old, prices={"connect": 5})
    assert shop.pool.calls == credits.calls == []
    key = (shop.company_id, shop.offices["b"])
    assert shop.pool.offices[key].kind is PlanKind.LEGACY
    # Reactivating it while the office has another active plan is refused before any peer
    # hears of it.
    assert await reason_of(change(shop, credits, old, active=True)) == "OFFICE_HAS_ACTIVE_PLAN"
    assert shop.pool.calls == credits.calls == []
    assert credits.accounts[key].allowance == 300


async def test_a_credits_outage_records_nothing_and_the_retry_finishes(
    shop: Shop, credits: FakeCredits
) -> None:
    plan = await new(shop, credits, "b", allowance=100)
    credits.refuse("put_account", Unavailable("CREDITS_UNAVAILABLE", "down"))
    with pytest.raises(Unavailable):
        await change(shop, credits, plan, "r1", credit_allowance=400)
    assert stored(shop, plan).credit_allowance == 100
    await change(shop, credits, plan, "r1", credit_allowance=400)
    assert stored(shop, plan).credit_allowance == 400
    assert credits.accounts[(shop.company_id, shop.offices["b"])].allowance == 400


async def test_the_pool_preview_comes_with_the_parity_check(
    shop: Shop, credits: FakeCredits
) -> None:
    await new(shop, credits, "b", prices={"connect": 900})
    shop.add("a", 2)
    shop.pool.add(shop.company_id, shop.offices["b"], "agentic_ai", 1)  # never poolable
    preview = await plans.preview_enable_pool(shop.company_id, "USD", shop.uow, shop.pool)
    assert [(e.office_id, e.license_type, e.quantity) for e in preview.pool.entries] == [
        (shop.offices["a"], "connect", 2)
    ]
    assert set(preview.pool.office_ids) == {shop.offices["a"], shop.offices["b"]}
    assert [m.license_type for m in preview.mismatches] == ["connect"]
    assert shop.pool.enabled == set()  # a preview changes nothing
    await new(shop, credits, "c", kind=PlanKind.LEGACY)
    refused = await plans.preview_enable_pool(shop.company_id, "USD", shop.uow, shop.pool)
    assert refused.pool.refusal_reason == "LEGACY_PLAN_IN_CURRENCY"
    assert refused.pool.entries == ()
    assert [m.license_type for m in refused.mismatches] == ["connect"]


async def test_a_credits_refusal_puts_the_pool_back_to_the_previous_plan(
    shop: Shop, credits: FakeCredits
) -> None:
    old = await new(shop, credits, "b", primary=True)
    await change(shop, credits, old, active=False)
    key = (shop.company_id, shop.offices["b"])
    before = shop.pool.offices[key]
    credits.refuse("put_account", Reason.OFFICE_CURRENCY_LOCKED.error("has USD entries"))
    command = plans.NewPlan(
        shop.company_id, "r", shop.offices["b"], PlanKind.BUNDLE, "EUR", {}, False, JAN_1, False
    )
    assert await reason_of(plans.new_plan(command, shop.uow, shop.pool, credits)) == (
        "OFFICE_CURRENCY_LOCKED"
    )
    assert shop.pool.offices[key] == before  # USD, no plan kind, as billing still has it
    assert [p.currency for p in shop.uow.state.plans.values() if p.office_id == key[1]] == ["USD"]


async def test_a_credits_refusal_of_a_new_office_leaves_it_without_a_plan_kind(
    shop: Shop, credits: FakeCredits
) -> None:
    credits.refuse("put_account", Reason.OFFICE_NOT_FOUND.error("another company's"))
    assert await reason_of(new(shop, credits, "c", kind=PlanKind.LEGACY)) == "OFFICE_NOT_FOUND"
    office = shop.pool.offices[(shop.company_id, shop.offices["c"])]
    assert office.kind is None  # no legacy plan left behind to block a pool


async def test_a_credits_refusal_of_a_change_puts_the_pool_back(
    shop: Shop, credits: FakeCredits
) -> None:
    plan = await new(shop, credits, "b")
    credits.refuse("put_account", Reason.OFFICE_NOT_FOUND.error("another company's"))
    assert await reason_of(change(shop, credits, plan, primary=True)) == "OFFICE_NOT_FOUND"
    assert not shop.pool.offices[(shop.company_id, shop.offices["b"])].primary
    assert not stored(shop, plan).primary


async def test_an_outage_of_credits_is_not_undone_the_retry_goes_on(
    shop: Shop, credits: FakeCredits
) -> None:
    plan = await new(shop, credits, "b")
    credits.refuse("put_account", Unavailable("CREDITS_UNAVAILABLE", "down"))
    shop.pool.calls.clear()
    with pytest.raises(Unavailable):
        await change(shop, credits, plan, "r2", primary=True)
    assert shop.pool.calls == ["put_office"]  # told once, not put back
    await change(shop, credits, plan, "r2", primary=True)
    assert shop.pool.offices[(shop.company_id, shop.offices["b"])].primary
    assert stored(shop, plan).primary
