"""What a quote and a purchase both establish first: the office's plan and price, the
cycle, whether the currency is pooled (its active plans must then agree on the price),
and whether the pool may give units to this checkout."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.billing.adapters.pool import Pool
from services.billing.domain import checkout, cycles, errors, parity
from services.billing.domain.model import Cycle, Plan
from services.billing.unit_of_work import BillingUnitOfWork
from services.billing.use_cases.common import active_plan


@dataclass(frozen=True, slots=True)
class Checkout:
    plan: Plan
    license_type: str
    unit_price: int
    now: datetime
    cycle: Cycle
    plans: tuple[Plan, ...]  # of the company, in the plan's currency
    pooled: bool = False  # the currency's pool is enabled (known after `priced_alike`)

    @property
    def takes_part(self) -> bool:
        """Whether the pool may give units to this checkout."""
        return checkout.pool_takes_part(self.pooled, self.plan.kind, self.license_type)


async def checkout_for(
    uow: BillingUnitOfWork, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str
) -> Checkout:
    """The office's plan, its price of the type, now and the cycle (one read)."""
    async with uow.reading() as tx:
        plan = await active_plan(tx, company_id, office_id)
        price = plan.price_of(license_type)
        if price is None:
            raise errors.type_not_priced(plan.plan_id, license_type)
        now = await tx.instants.now()
        plans = await tx.plans.of_company(company_id, plan.currency)
    cycle = cycles.cycle_at(plan.start_at, now)
    return Checkout(plan, license_type, price, now, cycle, tuple(plans))


async def priced_alike(found: Checkout, pool: Pool) -> Checkout:
    """The checkout with whether its currency is pooled; PRICING_MISMATCH if it is and
    the active plans disagree on the type's price."""
    plan = found.plan
    pooled = await pool.pool_enabled(plan.company_id, plan.currency)
    if pooled:
        parity.check(plan.company_id, plan.currency, found.plans, found.license_type)
    return Checkout(
        found.plan,
        found.license_type,
        found.unit_price,
        found.now,
        found.cycle,
        found.plans,
        pooled,
    )
