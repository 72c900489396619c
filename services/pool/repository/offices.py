"""Offices of the pool schema, and which company each office id belongs to.

An office id is its company's for good, across every company: `pool.office_owners` (global
data, a reference table once the schema is distributed by company) records the first
company that registered it.
"""

from __future__ import annotations

import uuid

import asyncpg

from services.pool.domain.model import Office, PlanKind
from services.pool.repository.rows import OFFICE_COLUMNS, to_office

GET = f"SELECT {OFFICE_COLUMNS} FROM pool.offices WHERE company_id = $1 AND office_id = $2"
OWNER = "SELECT company_id FROM pool.office_owners WHERE office_id = $1"
# Waits for a concurrent claim of the same id; the owner is read afterwards.
CLAIM = """
INSERT INTO pool.office_owners (office_id, company_id) VALUES ($1, $2)
ON CONFLICT (office_id) DO NOTHING
"""
# One primary office per company (a unique index): the old primary steps down first.
CLEAR_PRIMARY = """
UPDATE pool.offices SET is_primary = false
WHERE company_id = $1 AND is_primary AND office_id <> $2
"""
# An office put without a name keeps the one it has (billing puts the plan's facts only).
PUT = f"""
INSERT INTO pool.offices (company_id, office_id, currency, plan_kind, is_primary, display_name)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (company_id, office_id) DO UPDATE SET currency = EXCLUDED.currency,
    plan_kind = EXCLUDED.plan_kind, is_primary = EXCLUDED.is_primary,
    display_name = coalesce(nullif(EXCLUDED.display_name, ''), pool.offices.display_name)
RETURNING {OFFICE_COLUMNS}
"""
LIST = f"""
SELECT {OFFICE_COLUMNS} FROM pool.offices
WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)
  AND ($3::uuid IS NULL OR office_id > $3)
ORDER BY office_id LIMIT $4
"""
OF_CURRENCY = """
SELECT office_id FROM pool.offices
WHERE company_id = $1 AND currency = $2 AND ($3::text IS NULL OR plan_kind = $3)
ORDER BY office_id
"""


class Offices:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Office | None:
        row = await self._conn.fetchrow(GET, company_id, office_id)
        return to_office(row) if row else None

    async def owner(self, office_id: uuid.UUID) -> uuid.UUID | None:
        """The company an office id belongs to, if any."""
        value: uuid.UUID | None = await self._conn.fetchval(OWNER, office_id)
        return value

    async def put(self, office: Office) -> Office | None:
        """Creates or updates the office; None if its id belongs to another company."""
        await self._conn.execute(CLAIM, office.office_id, office.company_id)
        if await self.owner(office.office_id) != office.company_id:
            return None
        if office.primary:
            await self._conn.execute(CLEAR_PRIMARY, office.company_id, office.office_id)
        row = await self._conn.fetchrow(
            PUT,
            office.company_id,
            office.office_id,
            office.currency,
            office.plan_kind.value,
            office.primary,
            office.display_name,
        )
        return to_office(row) if row else None

    async def page(
        self, company_id: uuid.UUID, currency: str | None, after: uuid.UUID | None, limit: int
    ) -> list[Office]:
        rows = await self._conn.fetch(LIST, company_id, currency, after, limit)
        return [to_office(r) for r in rows]

    async def of_currency(
        self, company_id: uuid.UUID, currency: str, plan_kind: PlanKind | None = None
    ) -> list[uuid.UUID]:
        """The company's offices in the currency (on that kind of plan), by id."""
        kind = plan_kind.value if plan_kind else None
        rows = await self._conn.fetch(OF_CURRENCY, company_id, currency, kind)
        return [r["office_id"] for r in rows]
