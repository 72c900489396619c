"""Usage records (append-only) and their totals."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from libs.common.rows import from_row
from services.credits.domain.model import (
    Period,
    PeriodOverage,
    Split,
    UsageKind,
    UsageRecord,
    UsageTotal,
)

USAGE_COLUMNS = """usage_id, request_id, company_id, office_id, kind, currency, amount,
    occurred_at, period_start, period_end, from_allowance, from_office_balance,
    from_company_pool, from_ai_agent_credits, overage, recorded_at"""

INSERT_USAGE = f"""
INSERT INTO credits.usage_records ({USAGE_COLUMNS})
SELECT u.usage_id, u.request_id, $2::uuid, u.office_id, u.kind, u.currency, u.amount,
    u.occurred_at, u.period_start, u.period_end, u.from_allowance, u.from_office_balance,
    u.from_company_pool, u.from_ai_agent_credits, u.overage, u.recorded_at
FROM unnest(
    $1::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::bigint[],
    $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::bigint[], $12::bigint[],
    $13::bigint[], $14::bigint[], $15::bigint[], $16::timestamptz[])
    AS u(usage_id, request_id, office_id, kind, currency, amount, occurred_at, period_start,
         period_end, from_allowance, from_office_balance, from_company_pool,
         from_ai_agent_credits, overage, recorded_at)
"""

LIST_USAGE = f"""
SELECT {USAGE_COLUMNS} FROM credits.usage_records
WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
  AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR currency = $4)
  AND ($5::timestamptz IS NULL OR occurred_at >= $5)
  AND ($6::timestamptz IS NULL OR occurred_at < $6)
  AND ($7::timestamptz IS NULL OR (occurred_at, usage_id) > ($7, $8::uuid))
ORDER BY occurred_at, usage_id LIMIT $9
"""

USAGE_TOTALS = """
SELECT currency, office_id, count(*) AS n, sum(amount) AS amount,
    sum(from_allowance) AS from_allowance, sum(from_office_balance) AS from_office_balance,
    sum(from_company_pool) AS from_company_pool,
    sum(from_ai_agent_credits) AS from_ai_agent_credits, sum(overage) AS overage,
    grouping(office_id) = 1 AS company_total
FROM credits.usage_records
WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2) AND ($3::text IS NULL OR kind = $3)
  AND ($4::timestamptz IS NULL OR occurred_at >= $4)
  AND ($5::timestamptz IS NULL OR occurred_at < $5)
GROUP BY GROUPING SETS ((currency, office_id), (currency))
ORDER BY currency, office_id NULLS LAST
"""

# Periods that start in [$2, $3); a period is at most 31 days long, so its usage occurred
# in [$2, $3 + 31 days): that bound lets the statement use the index on occur time.
PERIOD_OVERAGE = """
SELECT office_id, currency, period_start, period_end, sum(overage) AS overage, count(*) AS n
FROM credits.usage_records
WHERE company_id = $1 AND overage > 0 AND period_start >= $2 AND period_start < $3
  AND occurred_at >= $2 AND occurred_at < $3 + interval '32 days'
GROUP BY office_id, currency, period_start, period_end
ORDER BY office_id::text, period_start
"""


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which usage records a list or a total covers: [start, end) of occur time."""

    company_id: uuid.UUID
    office_id: uuid.UUID | None = None
    kind: UsageKind | None = None
    currency: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def to_usage(row: asyncpg.Record) -> UsageRecord:
    return from_row(
        UsageRecord,
        row,
        kind=UsageKind(row["kind"]),
        period=Period(row["period_start"], row["period_end"]),
        split=Split(
            allowance=row["from_allowance"],
            office_balance=row["from_office_balance"],
            company_pool=row["from_company_pool"],
            ai_agent_credits=row["from_ai_agent_credits"],
            overage=row["overage"],
        ),
    )


class UsageRepository:
    """Usage records, on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def insert(self, company_id: uuid.UUID, records: Sequence[UsageRecord]) -> None:
        """Appends the records (one statement); a request_id the company used for another
        usage already is refused by a unique index."""
        if not records:
            return
        columns: list[list[Any]] = [[] for _ in range(15)]
        for r in records:
            values = (
                r.usage_id,
                r.request_id,
                r.office_id,
                r.kind.value,
                r.currency,
                r.amount,
                r.occurred_at,
                r.period.start,
                r.period.end,
                r.split.allowance,
                r.split.office_balance,
                r.split.company_pool,
                r.split.ai_agent_credits,
                r.split.overage,
                r.recorded_at,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        await self._conn.execute(INSERT_USAGE, columns[0], company_id, *columns[1:])

    async def get(self, company_id: uuid.UUID, usage_id: uuid.UUID) -> UsageRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {USAGE_COLUMNS} FROM credits.usage_records"
            " WHERE company_id = $1 AND usage_id = $2",
            company_id,
            usage_id,
        )
        return to_usage(row) if row else None

    async def page(
        self, where: UsageFilter, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[UsageRecord]:
        """Records in (occur time, usage id) order, after `after`."""
        rows = await self._conn.fetch(
            LIST_USAGE,
            where.company_id,
            where.office_id,
            where.kind.value if where.kind else None,
            where.currency,
            where.start,
            where.end,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_usage(r) for r in rows]

    async def totals(self, where: UsageFilter) -> tuple[list[UsageTotal], list[UsageTotal]]:
        """Totals per (currency, office) and per currency, from one statement (of every
        office: `where.office_id` is not a filter of totals)."""
        rows = await self._conn.fetch(
            USAGE_TOTALS,
            where.company_id,
            where.currency,
            where.kind.value if where.kind else None,
            where.start,
            where.end,
        )
        offices: list[UsageTotal] = []
        companies: list[UsageTotal] = []
        for r in rows:
            total = UsageTotal(
                office_id=None if r["company_total"] else r["office_id"],
                currency=r["currency"],
                count=r["n"],
                amount=int(r["amount"]),
                split=Split(
                    allowance=int(r["from_allowance"]),
                    office_balance=int(r["from_office_balance"]),
                    company_pool=int(r["from_company_pool"]),
                    ai_agent_credits=int(r["from_ai_agent_credits"]),
                    overage=int(r["overage"]),
                ),
            )
            (companies if r["company_total"] else offices).append(total)
        return offices, companies

    async def period_overage(
        self, company_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[PeriodOverage]:
        """Per office and period starting in [start, end), the overage charged to it."""
        rows = await self._conn.fetch(PERIOD_OVERAGE, company_id, start, end)
        return [
            PeriodOverage(
                office_id=r["office_id"],
                currency=r["currency"],
                period=Period(r["period_start"], r["period_end"]),
                overage=int(r["overage"]),
                count=r["n"],
            )
            for r in rows
        ]
