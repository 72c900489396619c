"""Pools of the pool schema: one row per (company, currency) pool that was switched on."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.pool.domain.allocation import Grace
from services.pool.domain.model import Pool, PoolContent
from services.pool.repository import free_list

ENABLED_AT = "SELECT enabled_at FROM pool.pools WHERE company_id = $1 AND currency = $2"
INSERT = "INSERT INTO pool.pools (company_id, currency, enabled_at) VALUES ($1, $2, $3)"
CONTENTS = f"""
SELECT license_type, count(*) FILTER (WHERE {free_list.grace(Grace.CLAIMABLE, "$3")}) AS claimable,
    count(*) FILTER (WHERE {free_list.grace(Grace.IN_GRACE, "$3")}) AS in_grace
FROM pool.free_units WHERE company_id = $1 AND currency = $2 AND pooled
GROUP BY license_type ORDER BY license_type
"""


class Pools:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, company_id: uuid.UUID, currency: str) -> Pool:
        """The pool of the currency (switched off if it never was on)."""
        enabled_at = await self._conn.fetchval(ENABLED_AT, company_id, currency)
        return Pool(company_id, currency, enabled_at)

    async def insert(self, company_id: uuid.UUID, currency: str, now: datetime) -> Pool:
        await self._conn.execute(INSERT, company_id, currency, now)
        return Pool(company_id, currency, now)

    async def contents(
        self, company_id: uuid.UUID, currency: str, now: datetime
    ) -> list[PoolContent]:
        """Per type, the pooled units claimable at `now` and those still in grace."""
        rows = await self._conn.fetch(CONTENTS, company_id, currency, now)
        return [PoolContent(r["license_type"], r["claimable"], r["in_grace"]) for r in rows]
