"""Removals: an office schedules spare units for removal at the end of its cycle."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.billing.adapters.pool import Pool
from services.billing.domain import removals
from services.billing.unit_of_work import BillingUnitOfWork
from services.billing.use_cases.common import active_plan, derived_request_id


@dataclass(frozen=True, slots=True)
class ScheduleRemoval:
    company_id: uuid.UUID
    request_id: str
    office_id: uuid.UUID
    license_type: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Removal:
    unit_ids: tuple[str, ...]
    removal_at: datetime


async def schedule_removal(command: ScheduleRemoval, uow: BillingUnitOfWork, pool: Pool) -> Removal:
    async with uow.reading() as tx:
        plan = await active_plan(tx, command.company_id, command.office_id)
        removals.check_removable(plan)
        now = await tx.instants.now()
    marked = await pool.mark_for_removal(
        derived_request_id("removal", command.company_id, command.request_id),
        command.company_id,
        command.office_id,
        command.license_type,
        command.quantity,
    )
    return Removal(marked, removals.removal_at(plan, now))
