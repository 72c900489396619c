"""Quotes: checkout previews that hold pool units under a quote id."""

from __future__ import annotations

import uuid

import asyncpg

from services.billing.domain.model import Quote
from services.billing.repository.rows import QUOTE_COLUMNS, to_quote


class Quotes:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def insert(self, quote: Quote) -> None:
        await self._conn.execute(
            f"""
            INSERT INTO billing.quotes ({QUOTE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
            """,
            quote.quote_id,
            quote.company_id,
            quote.office_id,
            quote.license_type,
            quote.quantity,
            quote.split.restored,
            quote.split.from_pool,
            quote.split.new,
            quote.plan_id,
            quote.currency,
            quote.unit_price,
            quote.amount,
            quote.cycle.start,
            quote.cycle.end,
            quote.quoted_at,
            quote.hold_id,
            quote.expires_at,
        )

    async def get(self, company_id: uuid.UUID, quote_id: uuid.UUID) -> Quote | None:
        row = await self._conn.fetchrow(
            f"SELECT {QUOTE_COLUMNS} FROM billing.quotes WHERE company_id = $1 AND quote_id = $2",
            company_id,
            quote_id,
        )
        return to_quote(row) if row else None
