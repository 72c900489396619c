"""Plans: one active plan per office (a unique index), one primary office per company."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.billing.domain import errors
from services.billing.domain.model import Plan
from services.billing.repository.rows import PLAN_COLUMNS, to_plan


class Plans:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def insert(self, plan: Plan) -> Plan:
        """The new plan; OFFICE_HAS_ACTIVE_PLAN if the office has an active one."""
        try:
            row = await self._conn.fetchrow(
                f"""
                INSERT INTO billing.plans ({PLAN_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13)
                RETURNING {PLAN_COLUMNS}
                """,
                plan.plan_id,
                plan.company_id,
                plan.office_id,
                plan.kind.value,
                plan.currency,
                dict(plan.prices),
                plan.contracted,
                plan.start_at,
                plan.active,
                plan.primary,
                plan.created_at,
                plan.display_name,
                plan.credit_allowance,
            )
        except asyncpg.UniqueViolationError:
            raise errors.office_has_active_plan(plan.office_id) from None
        return to_plan(row)

    async def update(self, plan: Plan) -> Plan:
        """The plan as changed; OFFICE_HAS_ACTIVE_PLAN if it would be a second active one."""
        try:
            row = await self._conn.fetchrow(
                f"""
                UPDATE billing.plans SET kind = $3, prices = $4, contracted = $5, active = $6,
                    is_primary = $7, updated_at = $8, display_name = $9, credit_allowance = $10
                WHERE company_id = $1 AND plan_id = $2
                RETURNING {PLAN_COLUMNS}
                """,
                plan.company_id,
                plan.plan_id,
                plan.kind.value,
                dict(plan.prices),
                plan.contracted,
                plan.active,
                plan.primary,
                plan.updated_at,
                plan.display_name,
                plan.credit_allowance,
            )
        except asyncpg.UniqueViolationError:
            raise errors.office_has_active_plan(plan.office_id) from None
        return to_plan(row)

    async def clear_primary(
        self, company_id: uuid.UUID, office_id: uuid.UUID, now: datetime
    ) -> None:
        """One primary office per company: setting one clears the others."""
        await self._conn.execute(
            "UPDATE billing.plans SET is_primary = false, updated_at = $3"
            " WHERE company_id = $1 AND is_primary AND office_id <> $2",
            company_id,
            office_id,
            now,
        )

    async def get(self, company_id: uuid.UUID, plan_id: uuid.UUID) -> Plan | None:
        row = await self._conn.fetchrow(
            f"SELECT {PLAN_COLUMNS} FROM billing.plans WHERE company_id = $1 AND plan_id = $2",
            company_id,
            plan_id,
        )
        return to_plan(row) if row else None

    async def active(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Plan | None:
        row = await self._conn.fetchrow(
            f"SELECT {PLAN_COLUMNS} FROM billing.plans"
            " WHERE company_id = $1 AND office_id = $2 AND active",
            company_id,
            office_id,
        )
        return to_plan(row) if row else None

    async def latest(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Plan | None:
        """The office's plan changed last (ties: the largest id), active or not."""
        row = await self._conn.fetchrow(
            f"SELECT {PLAN_COLUMNS} FROM billing.plans WHERE company_id = $1 AND office_id = $2"
            " ORDER BY updated_at DESC, plan_id::text DESC LIMIT 1",
            company_id,
            office_id,
        )
        return to_plan(row) if row else None

    async def office_owner(self, office_id: uuid.UUID) -> uuid.UUID | None:
        """The company whose plans name the office (None: no plan names it)."""
        owner: uuid.UUID | None = await self._conn.fetchval(
            "SELECT company_id FROM billing.plans WHERE office_id = $1 LIMIT 1", office_id
        )
        return owner

    async def of_company(self, company_id: uuid.UUID, currency: str | None = None) -> list[Plan]:
        rows = await self._conn.fetch(
            f"SELECT {PLAN_COLUMNS} FROM billing.plans"
            " WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)"
            " ORDER BY start_at, plan_id::text",
            company_id,
            currency,
        )
        return [to_plan(r) for r in rows]

    async def page(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        active_only: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Plan]:
        rows = await self._conn.fetch(
            f"""
            SELECT {PLAN_COLUMNS} FROM billing.plans
            WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
              AND ($3::text IS NULL OR currency = $3) AND (NOT $4 OR active)
              AND ($5::timestamptz IS NULL OR (start_at, plan_id::text) > ($5, $6::text))
            ORDER BY start_at, plan_id::text LIMIT $7
            """,
            company_id,
            office_id,
            currency,
            active_only,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_plan(r) for r in rows]
