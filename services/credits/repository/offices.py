"""Office credit accounts, which company each office id belongs to, and the pooling
switches.

An office id is its company's for good, across every company: `credits.office_owners`
(global data, a reference table once the schema is distributed by company) records the
first company that gave it an account.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from libs.common.rows import from_row
from services.credits.domain import errors
from services.credits.domain.model import (
    OfficeAccount,
    OveragePolicy,
    Pooling,
    Threshold,
    ThresholdKind,
    UsageLimits,
)

OFFICE_COLUMNS = """company_id, office_id, currency, is_primary, allowance, period_anchor,
    overage_policy, created_at, updated_at"""

# The thresholds of a currency with no alert in the alert period starting at $4.
_PENDING = """
FROM credits.credit_thresholds t
WHERE t.company_id = $1 AND t.currency = $2 AND NOT EXISTS (
    SELECT 1 FROM credits.credit_alerts a
    WHERE a.company_id = $1 AND a.currency = $2 AND a.threshold_kind = t.kind
      AND a.threshold_value = t.value AND a.period_start = $4)
ORDER BY t.kind, t.value
"""

# A batch of usages reads the offices it charges (with their caps), the company's primary
# office (AI agent credits), the currency's pooling switch, its pending thresholds and
# top-up level at once: one row per office, or one row of NULL offices when none
# matches, the rest on every row (the subqueries run once).
USAGE_CONTEXT = f"""
SELECT p.enabled AS pooling_enabled, p.updated_at AS pooling_updated_at,
    {", ".join("o." + c.strip() for c in OFFICE_COLUMNS.split(","))}, c.cap,
    (SELECT level FROM credits.pool_top_ups WHERE company_id = $1 AND currency = $2) AS top_up,
    ARRAY(SELECT t.kind {_PENDING}) AS pending_kinds,
    ARRAY(SELECT t.value {_PENDING}) AS pending_values
FROM (VALUES (1)) AS one (x)
LEFT JOIN credits.pooling p ON p.company_id = $1 AND p.currency = $2
LEFT JOIN credits.offices o
    ON o.company_id = $1 AND (o.office_id = ANY($3::uuid[]) OR o.is_primary)
LEFT JOIN credits.office_caps c ON c.company_id = $1 AND c.office_id = o.office_id
"""


def to_office(row: asyncpg.Record) -> OfficeAccount:
    return from_row(
        OfficeAccount,
        row,
        primary=row["is_primary"],
        overage_policy=OveragePolicy(row["overage_policy"]),
    )


class OfficeRepository:
    """Offices and pooling switches, on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # --- offices ------------------------------------------------------------------------

    async def owner(self, office_id: uuid.UUID) -> uuid.UUID | None:
        """The company the office belongs to, whichever it is."""
        value: uuid.UUID | None = await self._conn.fetchval(
            "SELECT company_id FROM credits.office_owners WHERE office_id = $1", office_id
        )
        return value

    async def get(self, company_id: uuid.UUID, office_id: uuid.UUID) -> OfficeAccount | None:
        row = await self._conn.fetchrow(
            f"SELECT {OFFICE_COLUMNS} FROM credits.offices"
            " WHERE company_id = $1 AND office_id = $2",
            company_id,
            office_id,
        )
        return to_office(row) if row else None

    async def with_primary(
        self, company_id: uuid.UUID, office_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, OfficeAccount], OfficeAccount | None]:
        """The named offices, and the company's primary office (if any)."""
        rows = await self._conn.fetch(
            f"SELECT {OFFICE_COLUMNS} FROM credits.offices"
            " WHERE company_id = $1 AND (office_id = ANY($2::uuid[]) OR is_primary)",
            company_id,
            list(office_ids),
        )
        return _named_and_primary([to_office(r) for r in rows], office_ids)

    async def usage_context(
        self,
        company_id: uuid.UUID,
        currency: str,
        office_ids: Sequence[uuid.UUID],
        alert_period_start: datetime,
    ) -> tuple[dict[uuid.UUID, OfficeAccount], OfficeAccount | None, Pooling, UsageLimits]:
        """What a batch of usages of one (company, currency) charges against: the named
        offices, the primary office, the pooling switch, and the caps and thresholds that
        limit and watch it (one statement)."""
        rows = await self._conn.fetch(
            USAGE_CONTEXT, company_id, currency, list(office_ids), alert_period_start
        )
        first = rows[0]
        limits = UsageLimits(
            caps={r["office_id"]: r["cap"] for r in rows if r["cap"] is not None},
            pending=tuple(
                Threshold(ThresholdKind(kind), value)
                for kind, value in zip(first["pending_kinds"], first["pending_values"], strict=True)
            ),
            top_up=first["top_up"] or 0,
        )
        pooling = Pooling(
            company_id,
            currency,
            bool(first["pooling_enabled"]),
            first["pooling_updated_at"],
        )
        offices = [to_office(r) for r in rows if r["office_id"] is not None]
        named, primary = _named_and_primary(offices, office_ids)
        return named, primary, pooling, limits

    async def put(self, office: OfficeAccount, now: datetime) -> OfficeAccount:
        """Creates or replaces the office's account; a primary office takes the flag from
        the company's previous one (one primary office per company: a unique index).
        OFFICE_NOT_FOUND if another company took the office id meanwhile."""
        # Waits for a concurrent claim of the same id; the owner is read afterwards.
        await self._conn.execute(
            "INSERT INTO credits.office_owners (office_id, company_id) VALUES ($1, $2)"
            " ON CONFLICT (office_id) DO NOTHING",
            office.office_id,
            office.company_id,
        )
        if await self.owner(office.office_id) != office.company_id:
            raise errors.office_not_found(office.office_id)
        if office.primary:
            await self._conn.execute(
                "UPDATE credits.offices SET is_primary = false, updated_at = $3"
                " WHERE company_id = $1 AND is_primary AND office_id <> $2",
                office.company_id,
                office.office_id,
                now,
            )
        row = await self._conn.fetchrow(
            f"""
            INSERT INTO credits.offices ({OFFICE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
            ON CONFLICT (company_id, office_id) DO UPDATE SET currency = EXCLUDED.currency,
                is_primary = EXCLUDED.is_primary, allowance = EXCLUDED.allowance,
                period_anchor = EXCLUDED.period_anchor,
                overage_policy = EXCLUDED.overage_policy, updated_at = EXCLUDED.updated_at
            RETURNING {OFFICE_COLUMNS}
            """,
            office.company_id,
            office.office_id,
            office.currency,
            office.primary,
            office.allowance,
            office.period_anchor,
            office.overage_policy.value,
            now,
        )
        return to_office(row)

    async def page(
        self, company_id: uuid.UUID, currency: str | None, after: uuid.UUID | None, limit: int
    ) -> list[OfficeAccount]:
        rows = await self._conn.fetch(
            f"""
            SELECT {OFFICE_COLUMNS} FROM credits.offices
            WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)
              AND ($3::uuid IS NULL OR office_id > $3)
            ORDER BY office_id LIMIT $4
            """,
            company_id,
            currency,
            after,
            limit,
        )
        return [to_office(r) for r in rows]

    async def has_ledger(self, company_id: uuid.UUID, office_id: uuid.UUID) -> bool:
        """Whether anything was ever charged or granted to the company's office."""
        found: bool = await self._conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM credits.usage_records
                           WHERE company_id = $1 AND office_id = $2)
                OR EXISTS (SELECT 1 FROM credits.grants
                           WHERE company_id = $1 AND office_id = $2)
                OR EXISTS (SELECT 1 FROM credits.ledger_accounts
                           WHERE company_id = $1 AND office_id = $2 AND balance <> 0)
            """,
            company_id,
            office_id,
        )
        return found

    async def of_currency(self, company_id: uuid.UUID, currency: str) -> list[uuid.UUID]:
        rows = await self._conn.fetch(
            "SELECT office_id FROM credits.offices WHERE company_id = $1 AND currency = $2"
            " ORDER BY office_id",
            company_id,
            currency,
        )
        return [r["office_id"] for r in rows]

    # --- pooling ------------------------------------------------------------------------

    async def pooling(self, company_id: uuid.UUID, currency: str) -> Pooling:
        row = await self._conn.fetchrow(
            "SELECT enabled, updated_at FROM credits.pooling"
            " WHERE company_id = $1 AND currency = $2",
            company_id,
            currency,
        )
        if row is None:
            return Pooling(company_id, currency, False, None)
        return Pooling(company_id, currency, row["enabled"], row["updated_at"])

    async def company_pooling(self, company_id: uuid.UUID, currency: str | None) -> list[Pooling]:
        rows = await self._conn.fetch(
            "SELECT currency, enabled, updated_at FROM credits.pooling"
            " WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)",
            company_id,
            currency,
        )
        return [Pooling(company_id, r["currency"], r["enabled"], r["updated_at"]) for r in rows]

    async def set_pooling(
        self, company_id: uuid.UUID, currency: str, enabled: bool, now: datetime
    ) -> Pooling:
        await self._conn.execute(
            """
            INSERT INTO credits.pooling (company_id, currency, enabled, updated_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (company_id, currency) DO UPDATE
                SET enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at
            """,
            company_id,
            currency,
            enabled,
            now,
        )
        return Pooling(company_id, currency, enabled, now)


def _named_and_primary(
    offices: Sequence[OfficeAccount], office_ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, OfficeAccount], OfficeAccount | None]:
    primary = next((o for o in offices if o.primary), None)
    wanted = set(office_ids)
    return {o.office_id: o for o in offices if o.office_id in wanted}, primary
