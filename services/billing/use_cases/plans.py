"""Plans: create, change, read; pricing parity across a pooled currency, and what enabling
a pool would do. Creating a plan, or changing one that is (or was) the office's active
plan, tells the peers the office's facts first, then records the plan: the pool gets its
currency, plan kind (NONE once deactivated) and primary flag, the credits service its
account's currency, primary flag, allowance and period anchor. The peer calls carry
request_ids derived from the caller's, so a retry (after a crash too) replays them and
then records; a peer's refusal (the pool's LEGACY_PLAN_IN_CURRENCY) comes before anything
is recorded."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from libs.common.errors import DomainError
from libs.common.unit_of_work import read_one
from services.billing.adapters.credits import Credits
from services.billing.adapters.pool import Pool
from services.billing.domain import errors, office_facts, parity
from services.billing.domain.model import Plan, PlanKind, PoolPreview
from services.billing.unit_of_work import BillingUnitOfWork, Tx
from services.billing.use_cases.common import derived_request_id


@dataclass(frozen=True, slots=True)
class NewPlan:
    company_id: uuid.UUID
    request_id: str
    office_id: uuid.UUID
    kind: PlanKind
    currency: str
    prices: Mapping[str, int]
    contracted: bool
    start_at: datetime | None
    primary: bool
    display_name: str = ""
    credit_allowance: int = 0


@dataclass(frozen=True, slots=True)
class PlanChanges:
    company_id: uuid.UUID
    request_id: str
    plan_id: uuid.UUID
    kind: PlanKind | None = None
    prices: Mapping[str, int] | None = None
    contracted: bool | None = None
    active: bool | None = None
    primary: bool | None = None
    display_name: str | None = None
    credit_allowance: int | None = None


@dataclass(frozen=True, slots=True)
class PlanPage:
    company_id: uuid.UUID
    office_id: uuid.UUID | None
    currency: str | None
    active_only: bool
    after: tuple[datetime, str] | None
    limit: int


@dataclass(frozen=True, slots=True)
class EnablePreview:
    """What enabling a currency's pool would do, and the prices that would then block
    purchases."""

    pool: PoolPreview
    mismatches: list[parity.Mismatch]


async def _tell_peers(
    plan: Plan, previous: Plan | None, request_id: str, pool: Pool, credits: Credits | None
) -> None:
    """The pool first: its refusals come before the credit account changed. A refusal of
    credits puts the pool back to the facts of `previous` (see `office_facts`)."""
    await pool.put_office(derived_request_id("put-office", plan.company_id, request_id), plan)
    if credits is None:
        return
    try:
        await credits.put_account(
            derived_request_id("put-account", plan.company_id, request_id), plan
        )
    except DomainError as refused:
        if office_facts.undoes(refused.kind):
            await pool.put_office(
                derived_request_id("undo-put-office", plan.company_id, request_id),
                office_facts.facts_before(plan, previous),
            )
        raise


async def new_plan(
    command: NewPlan, uow: BillingUnitOfWork, pool: Pool, credits: Credits | None = None
) -> Plan:
    """The plan to create, once the pool knows the office (record it with `add_plan`)."""
    async with uow.reading() as tx:
        now = await tx.instants.now()
        if await tx.plans.active(command.company_id, command.office_id) is not None:
            raise errors.office_has_active_plan(command.office_id)
        latest = await tx.plans.latest(command.company_id, command.office_id)
    plan = Plan(
        plan_id=uuid.uuid4(),
        company_id=command.company_id,
        office_id=command.office_id,
        kind=command.kind,
        currency=command.currency,
        prices=dict(command.prices),
        contracted=command.contracted,
        start_at=(command.start_at or now).replace(microsecond=0),
        active=True,
        primary=command.primary,
        created_at=now,
        updated_at=now,
        display_name=command.display_name,
        credit_allowance=command.credit_allowance,
    )
    await _tell_peers(plan, latest, command.request_id, pool, credits)
    return plan


async def add_plan(plan: Plan, tx: Tx) -> Plan:
    """Records a new plan (one primary office per company)."""
    if plan.primary:
        await tx.plans.clear_primary(plan.company_id, plan.office_id, plan.created_at)
    return await tx.plans.insert(plan)


async def changed_plan(
    command: PlanChanges, uow: BillingUnitOfWork, pool: Pool, credits: Credits | None = None
) -> Plan:
    """The plan as changed, once the peers know the office (record it with `save_plan`).
    Only the office's active plan speaks for the office: a change of a plan that neither
    is nor was active tells no peer."""
    async with uow.reading() as tx:
        now = await tx.instants.now()
        current = await tx.plans.get(command.company_id, command.plan_id)
        active = await tx.plans.active(current.company_id, current.office_id) if current else None
    if current is None:
        raise errors.plan_not_found(command.plan_id)
    plan = replace(
        current,
        kind=command.kind if command.kind is not None else current.kind,
        prices=dict(command.prices) if command.prices is not None else current.prices,
        contracted=command.contracted if command.contracted is not None else current.contracted,
        active=command.active if command.active is not None else current.active,
        primary=command.primary if command.primary is not None else current.primary,
        display_name=(
            command.display_name if command.display_name is not None else current.display_name
        ),
        credit_allowance=(
            command.credit_allowance
            if command.credit_allowance is not None
            else current.credit_allowance
        ),
        updated_at=now,
    )
    if plan.active and active is not None and active.plan_id != plan.plan_id:
        raise errors.office_has_active_plan(plan.office_id)  # before any peer hears of it
    if plan.active or current.active:
        await _tell_peers(plan, current, command.request_id, pool, credits)
    return plan


async def save_plan(plan: Plan, tx: Tx) -> Plan:
    if plan.primary and plan.active:
        await tx.plans.clear_primary(plan.company_id, plan.office_id, plan.updated_at)
    return await tx.plans.update(plan)


async def get_plan(company_id: uuid.UUID, plan_id: uuid.UUID, uow: BillingUnitOfWork) -> Plan:
    return await read_one(
        uow, lambda tx: tx.plans.get(company_id, plan_id), errors.plan_not_found, plan_id
    )


async def list_plans(page: PlanPage, uow: BillingUnitOfWork) -> list[Plan]:
    async with uow.reading() as tx:
        return await tx.plans.page(
            page.company_id, page.office_id, page.currency, page.active_only, page.after, page.limit
        )


async def pricing_parity(
    company_id: uuid.UUID, currency: str, uow: BillingUnitOfWork, pool: Pool
) -> tuple[list[parity.Mismatch], bool]:
    """The types the active plans of the currency price differently, and whether the
    currency is pooled (where that matters)."""
    async with uow.reading() as tx:
        plans = await tx.plans.of_company(company_id, currency)
    return parity.mismatches(plans), await pool.pool_enabled(company_id, currency)


async def preview_enable_pool(
    company_id: uuid.UUID, currency: str, uow: BillingUnitOfWork, pool: Pool
) -> EnablePreview:
    """The pool's preview of enabling, and the types the currency's active plans price
    differently (purchases of those would fail once the pool is on)."""
    preview = await pool.preview_enable(company_id, currency)
    async with uow.reading() as tx:
        plans = await tx.plans.of_company(company_id, currency)
    return EnablePreview(preview, parity.mismatches(plans))
