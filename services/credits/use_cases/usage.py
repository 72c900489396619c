"""Usage history: GetUsage, ListUsage, GetUsageTotals, GetPeriodOverage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from libs.common.unit_of_work import read_one
from services.credits.domain import errors
from services.credits.domain.model import PeriodOverage, UsageRecord, UsageTotal
from services.credits.repository.usage import UsageFilter
from services.credits.unit_of_work import CreditsUnitOfWork


@dataclass(frozen=True, slots=True)
class UsagePage:
    """A page of usage records, in (occur time, usage id) order after `after`; one more
    than `size` is read, to know whether another page follows."""

    where: UsageFilter
    after: tuple[datetime, uuid.UUID] | None
    size: int


@dataclass(frozen=True, slots=True)
class OverageQuery:
    """The overage of every office's periods that start in [start, end)."""

    company_id: uuid.UUID
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Totals per office and per currency; the office totals add up to the currency's."""

    offices: list[UsageTotal]
    companies: list[UsageTotal]


async def get_usage(
    company_id: uuid.UUID, usage_id: uuid.UUID, uow: CreditsUnitOfWork
) -> UsageRecord:
    return await read_one(
        uow, lambda tx: tx.usage.get(company_id, usage_id), errors.usage_not_found, usage_id
    )


async def list_usage(page: UsagePage, uow: CreditsUnitOfWork) -> list[UsageRecord]:
    async with uow.stale_reading() as tx:
        return await tx.usage.page(page.where, page.after, page.size + 1)


async def usage_totals(where: UsageFilter, uow: CreditsUnitOfWork) -> UsageTotals:
    async with uow.stale_reading() as tx:
        offices, companies = await tx.usage.totals(where)
    return UsageTotals(offices, companies)


async def period_overage(query: OverageQuery, uow: CreditsUnitOfWork) -> list[PeriodOverage]:
    async with uow.reading() as tx:
        return await tx.usage.period_overage(query.company_id, query.start, query.end)
