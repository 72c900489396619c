"""Holds and receipts of the pool schema (both are written by an allocation batch,
`repository/allocation.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.pool.domain.model import Assignee, Hold, HoldState, Receipt, Unit
from services.pool.repository.rows import (
    HOLD_COLUMNS,
    RECEIPT_COLUMNS,
    UNIT_COLUMNS,
    UPDATED_UNIT_COLUMNS,
    to_hold,
    to_receipt,
    to_units_by_id,
)

GET_HOLDS = f"""
SELECT {HOLD_COLUMNS} FROM pool.holds h WHERE h.company_id = $1 AND h.hold_id = ANY($2::uuid[])
"""
# A hold resolves once: only a PENDING row changes (the database's guarantee; which
# resolution applies is decided in `domain/holds.py`).
RESOLVE = f"""
WITH resolved AS (
    UPDATE pool.holds SET state = $3, resolved_at = $4
    WHERE company_id = $1 AND hold_id = ANY($2::uuid[]) AND state = 'PENDING'
    RETURNING *
)
SELECT {HOLD_COLUMNS} FROM resolved h
"""
# Puts held units back exactly as they were (pool units keep claimable_at).
RESTORE_HELD = """
WITH back AS (
    UPDATE pool.units SET state = held_from, held_from = NULL, hold_id = NULL, updated_at = $3
    WHERE company_id = $1 AND hold_id = ANY($2::uuid[])
    RETURNING unit_id, company_id, currency, license_type, office_id, state, returned_at,
        claimable_at
)
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled,
    returned_at, claimable_at)
SELECT unit_id, company_id, currency, license_type, office_id, state = 'POOLED', returned_at,
    claimable_at
FROM back
"""
# PENDING holds whose expiry has come (`holds.is_expired`: from expires_at on).
DUE = """
SELECT hold_id, company_id, currency FROM pool.holds
WHERE state = 'PENDING' AND expires_at <= $1
ORDER BY expires_at LIMIT $2
"""
COMMIT_ASSIGNED = f"""
WITH held AS (
    SELECT unit_id, row_number() OVER (ORDER BY unit_id) AS n
    FROM pool.units WHERE company_id = $6 AND hold_id = $1
)
UPDATE pool.units u SET state = 'ASSIGNED', hold_id = NULL, held_from = NULL, office_id = $2,
    assignee_kind = a.kind, assignee_id = a.id, returned_at = NULL, claimable_at = NULL,
    updated_at = $3
FROM held LEFT JOIN unnest($4::text[], $5::text[]) WITH ORDINALITY AS a(kind, id, n)
    ON a.n = held.n
WHERE u.company_id = $6 AND u.unit_id = held.unit_id
RETURNING {UPDATED_UNIT_COLUMNS}
"""
COMMIT_SPARE = f"""
WITH moved AS (
    UPDATE pool.units SET state = 'SPARE', hold_id = NULL, held_from = NULL, office_id = $2,
        returned_at = NULL, claimable_at = NULL, updated_at = $3
    WHERE company_id = $4 AND hold_id = $1
    RETURNING {UNIT_COLUMNS}
), free AS (
    INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
    SELECT unit_id, company_id, currency, license_type, office_id, false FROM moved
)
SELECT * FROM moved
"""
GET_RECEIPT = f"""
SELECT {RECEIPT_COLUMNS} FROM pool.receipts WHERE company_id = $1 AND receipt_id = $2
"""


class Holds:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> Hold | None:
        found = await self.get_many(company_id, [hold_id])
        return found[0] if found else None

    async def get_many(self, company_id: uuid.UUID, hold_ids: Sequence[uuid.UUID]) -> list[Hold]:
        rows = await self._conn.fetch(GET_HOLDS, company_id, list(hold_ids))
        return [to_hold(r) for r in rows]

    async def resolve(
        self,
        company_id: uuid.UUID,
        hold_ids: Sequence[uuid.UUID],
        state: HoldState,
        now: datetime,
    ) -> list[Hold]:
        """PENDING holds among `hold_ids` become `state`; returns those that did."""
        rows = await self._conn.fetch(RESOLVE, company_id, list(hold_ids), state.value, now)
        return [to_hold(r) for r in rows]

    async def restore_units(
        self, company_id: uuid.UUID, hold_ids: Sequence[uuid.UUID], now: datetime
    ) -> None:
        """The units of the company's holds go back to the state they were held from."""
        await self._conn.execute(RESTORE_HELD, company_id, list(hold_ids), now)

    async def commit_assigned(
        self, hold: Hold, assignees: Sequence[Assignee], now: datetime
    ) -> list[Unit]:
        """The hold's units become ASSIGNED in its office, paired with the assignees in
        unit-id order."""
        rows = await self._conn.fetch(
            COMMIT_ASSIGNED,
            hold.hold_id,
            hold.office_id,
            now,
            [a.kind for a in assignees],
            [a.id for a in assignees],
            hold.company_id,
        )
        return to_units_by_id(rows)

    async def commit_spare(self, hold: Hold, now: datetime) -> list[Unit]:
        """The hold's units become SPARE of its office."""
        rows = await self._conn.fetch(
            COMMIT_SPARE, hold.hold_id, hold.office_id, now, hold.company_id
        )
        return to_units_by_id(rows)

    async def due(self, now: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        """(hold, company, currency) of PENDING holds expired at `now`, oldest first."""
        rows = await self._conn.fetch(DUE, now, limit)
        return [(r["hold_id"], r["company_id"], r["currency"]) for r in rows]


class Receipts:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, company_id: uuid.UUID, receipt_id: uuid.UUID) -> Receipt | None:
        row = await self._conn.fetchrow(GET_RECEIPT, company_id, receipt_id)
        return to_receipt(row) if row else None
