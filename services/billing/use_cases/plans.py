"""Plans: create, change, read; and pricing parity across a pooled currency. Creating or
changing an active plan tells the pool the office's facts first (currency, plan kind,
primary), then records the plan."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from services.billing.adapters.pool import Pool
from services.billing.domain import errors, parity
from services.billing.domain.model import Plan, PlanKind
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


@dataclass(frozen=True, slots=True)
class PlanPage:
    company_id: uuid.UUID
    office_id: uuid.UUID | None
    currency: str | None
    active_only: bool
    after: tuple[datetime, str] | None
    limit: int


async def _tell_pool(pool: Pool, plan: Plan, request_id: str) -> None:
    await pool.put_office(derived_request_id("put-office", plan.company_id, request_id), plan)


async def new_plan(command: NewPlan, uow: BillingUnitOfWork, pool: Pool) -> Plan:
    """The plan to create, once the pool knows the office (record it with `add_plan`)."""
    async with uow.reading() as tx:
        now = await tx.instants.now()
        if await tx.plans.active(command.company_id, command.office_id) is not None:
            raise errors.office_has_active_plan(command.office_id)
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
    )
    await _tell_pool(pool, plan, command.request_id)
    return plan


async def add_plan(plan: Plan, tx: Tx) -> Plan:
    """Records a new plan (one primary office per company)."""
    if plan.primary:
        await tx.plans.clear_primary(plan.company_id, plan.office_id, plan.created_at)
    return await tx.plans.insert(plan)


async def changed_plan(command: PlanChanges, uow: BillingUnitOfWork, pool: Pool) -> Plan:
    """The plan as changed, once the pool knows the office (record it with `save_plan`)."""
    async with uow.reading() as tx:
        now = await tx.instants.now()
        current = await tx.plans.get(command.company_id, command.plan_id)
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
        updated_at=now,
    )
    if plan.active:
        await _tell_pool(pool, plan, command.request_id)
    return plan


async def save_plan(plan: Plan, tx: Tx) -> Plan:
    if plan.primary and plan.active:
        await tx.plans.clear_primary(plan.company_id, plan.office_id, plan.updated_at)
    return await tx.plans.update(plan)


async def get_plan(company_id: uuid.UUID, plan_id: uuid.UUID, uow: BillingUnitOfWork) -> Plan:
    async with uow.reading() as tx:
        plan = await tx.plans.get(company_id, plan_id)
    if plan is None:
        raise errors.plan_not_found(plan_id)
    return plan


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
