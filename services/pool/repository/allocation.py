"""The SQL of an allocation batch (Acquire, Reserve), on the batch's connection.

A batch of one (company, currency) runs, inside its transaction and after the lock:
`pool_and_offices` (one read), the idempotency lookup, then per group of requests of the
same office and type `candidates` and `hand_out`, `bystanders` only when a request falls
short, and `insert_records` for the batch's holds and receipts. Only one transaction can
delete a free-list row, so a unit is never handed out twice, even across replicas.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.common.currency import SUPPORTED_CURRENCIES
from services.pool.domain.allocation import ALLOCATION_ORDER, ALLOCATION_RULES, Bystanders, Grace
from services.pool.domain.model import Assignee, Hold, Office, Pool, Receipt, Source, Unit
from services.pool.repository import free_list
from services.pool.repository.rows import (
    OFFICE_COLUMNS,
    UPDATED_UNIT_COLUMNS,
    passed_over_json,
    taken_json,
    to_office,
    to_unit,
    uuid_array,
)


@dataclass(frozen=True, slots=True)
class Handout:
    """One unit handed out: to an office (ASSIGNED, maybe to an assignee) or into a hold."""

    unit_id: uuid.UUID
    office_id: uuid.UUID
    hold_id: uuid.UUID | None
    assignee: Assignee | None


POOL_AND_OFFICES = f"""
SELECT p.enabled_at, o.*
FROM (SELECT 1) one
LEFT JOIN pool.pools p ON p.company_id = $1 AND p.currency = $2
LEFT JOIN (SELECT {OFFICE_COLUMNS} FROM pool.offices
           WHERE company_id = $1 AND office_id = ANY($3::uuid[])) o ON true
"""

# Rows are locked, not yet taken: `HAND_OUT` takes the ones handed out.
CANDIDATES = free_list.candidates(ALLOCATION_RULES)

# Removes the units from the free-list (only one transaction can) and makes them
# ASSIGNED to their new office, or HELD (remembering where they were). The rows taken
# carry their hand-out on, so each unit is joined once, by key.
HAND_OUT = f"""
WITH gone AS (
    DELETE FROM pool.free_units f
    USING unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
        AS a(unit_id, office_id, hold_id, kind, ident)
    WHERE f.company_id = $7 AND f.unit_id = a.unit_id
    RETURNING a.*
)
UPDATE pool.units u SET
    state = CASE WHEN a.hold_id IS NULL THEN 'ASSIGNED' ELSE 'HELD' END,
    held_from = CASE WHEN a.hold_id IS NULL THEN NULL ELSE u.state END,
    hold_id = a.hold_id,
    office_id = CASE WHEN a.hold_id IS NULL THEN a.office_id ELSE u.office_id END,
    assignee_kind = a.kind,
    assignee_id = a.ident,
    returned_at = CASE WHEN a.hold_id IS NULL THEN NULL ELSE u.returned_at END,
    claimable_at = CASE WHEN a.hold_id IS NULL THEN NULL ELSE u.claimable_at END,
    updated_at = $6
FROM gone a
WHERE u.company_id = $7 AND u.unit_id = a.unit_id AND u.state IN ('SPARE', 'POOLED')
RETURNING {UPDATED_UNIT_COLUMNS}
"""

# Units that are no candidates, by reason; each part reads one partial index.
BYSTANDERS = f"""
SELECT
    (SELECT count(*) FROM pool.free_units
     WHERE company_id = $1 AND license_type = $4 AND NOT pooled
       AND currency = $3 AND office_id <> $2) AS spare,
    grace.n AS in_grace,
    grace.earliest,
    (SELECT count(*) FROM pool.free_units
     WHERE company_id = $1 AND license_type = $4 AND NOT pooled AND currency <> $3)
    + (SELECT count(*) FROM pool.free_units
       WHERE company_id = $1 AND currency = ANY($7::text[]) AND license_type = $4 AND pooled)
        AS other_currency,
    (SELECT count(*) FROM pool.units
     WHERE company_id = $1 AND currency = $3 AND license_type = $4 AND state = 'HELD'
       AND hold_id IS DISTINCT FROM $6) AS held
FROM (
    SELECT count(*) AS n, min(claimable_at) AS earliest FROM pool.free_units
    WHERE company_id = $1 AND currency = $3 AND license_type = $4 AND pooled
      AND office_id <> $2 AND {free_list.grace(Grace.IN_GRACE, "$5")}
) grace
"""

# The records of one allocation batch, in one statement: its holds and its receipts.
INSERT_RECORDS = """
WITH holds AS (
    INSERT INTO pool.holds (hold_id, company_id, office_id, currency, license_type, state,
        quantity, expires_at, receipt_id, created_at, unit_ids)
    SELECT h.id, $1, h.office, $2, h.type, 'PENDING', h.quantity, h.expires, h.receipt, $3,
        h.units::uuid[]
    FROM unnest($4::uuid[], $5::uuid[], $6::text[], $7::int[], $8::timestamptz[], $9::uuid[],
                $18::text[]) AS h(id, office, type, quantity, expires, receipt, units)
)
INSERT INTO pool.receipts (receipt_id, company_id, office_id, currency, license_type,
    requested, taken, shortfall, passed_over, hold_id, created_at)
SELECT r.id, $1, r.office, $2, r.type, r.requested, r.taken::jsonb, r.shortfall,
    r.passed::jsonb, r.hold, $3
FROM unnest($10::uuid[], $11::uuid[], $12::text[], $13::int[], $14::text[], $15::int[],
            $16::text[], $17::uuid[]) AS r(id, office, type, requested, taken, shortfall,
                                           passed, hold)
"""


class Allocations:
    """The statements of an allocation batch, on its connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def pool_and_offices(
        self, company_id: uuid.UUID, currency: str, office_ids: Sequence[uuid.UUID]
    ) -> tuple[Pool, dict[uuid.UUID, Office]]:
        """The pool of the currency and the named offices of the company, in one read."""
        rows = await self._conn.fetch(POOL_AND_OFFICES, company_id, currency, list(office_ids))
        offices = {r["office_id"]: to_office(r) for r in rows if r["office_id"] is not None}
        return Pool(company_id, currency, rows[0]["enabled_at"]), offices

    async def candidates(
        self,
        office: Office,
        license_type: str,
        sources: Sequence[Source],
        limit: int,
        now: datetime,
    ) -> list[tuple[uuid.UUID, Source]]:
        """Up to `limit` allocatable units for the office, in allocation order, locked."""
        rows = await self._conn.fetch(
            CANDIDATES,
            office.company_id,
            office.office_id,
            office.currency,
            license_type,
            *(source in sources for source in ALLOCATION_ORDER),
            limit,
            now,
        )
        return [(r["unit_id"], ALLOCATION_ORDER[r["rank"] - 1]) for r in rows]

    async def hand_out(
        self, company_id: uuid.UUID, handouts: Sequence[Handout], now: datetime
    ) -> dict[uuid.UUID, Unit]:
        """Takes the company's units of `handouts`; returns them as they are now, by id."""
        if not handouts:
            return {}
        rows = await self._conn.fetch(
            HAND_OUT,
            [h.unit_id for h in handouts],
            [h.office_id for h in handouts],
            [h.hold_id for h in handouts],
            [h.assignee.kind if h.assignee else None for h in handouts],
            [h.assignee.id if h.assignee else None for h in handouts],
            now,
            company_id,
        )
        return {r["unit_id"]: to_unit(r) for r in rows}

    async def bystanders(self, office: Office, license_type: str, now: datetime) -> Bystanders:
        others = sorted(SUPPORTED_CURRENCIES - {office.currency})
        row = await self._conn.fetchrow(
            BYSTANDERS,
            office.company_id,
            office.office_id,
            office.currency,
            license_type,
            now,
            None,  # no hold of ours is excluded: the batch's holds do not exist yet
            others,
        )
        return Bystanders(
            other_office_spare=row["spare"],
            other_office_in_grace=row["in_grace"],
            earliest_claimable_at=row["earliest"],
            held=row["held"],
            other_currency=row["other_currency"],
        )

    async def insert_records(
        self,
        company_id: uuid.UUID,
        currency: str,
        now: datetime,
        holds: Sequence[Hold],
        receipts: Sequence[Receipt],
    ) -> None:
        """Stores the holds and receipts of one allocation batch (all made at `now`)."""
        if not holds and not receipts:
            return
        await self._conn.execute(
            INSERT_RECORDS,
            company_id,
            currency,
            now,
            [h.hold_id for h in holds],
            [h.office_id for h in holds],
            [h.license_type for h in holds],
            [len(h.unit_ids) for h in holds],
            [h.expires_at for h in holds],
            [h.receipt_id for h in holds],
            [r.receipt_id for r in receipts],
            [r.office_id for r in receipts],
            [r.license_type for r in receipts],
            [r.requested for r in receipts],
            [taken_json(r) for r in receipts],
            [r.shortfall for r in receipts],
            [passed_over_json(r) for r in receipts],
            [r.hold_id for r in receipts],
            [uuid_array(h.unit_ids) for h in holds],
        )
