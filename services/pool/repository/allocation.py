"""The SQL of an allocation batch (Acquire, Reserve), on the batch's connection.

A batch serves one or more (company, currency) keys. Inside its transaction and after
their locks it runs, whatever the number of keys and groups of requests (same office and
type): `pools_and_offices` (one read), the idempotency lookup, `candidates` of every
group, `hand_out` of everything handed out, `bystanders` only for a group that falls
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
from services.pool.domain.history import EventKind
from services.pool.domain.model import Assignee, Hold, Office, Pool, Receipt, Source, Unit
from services.pool.repository import free_list
from services.pool.repository.history import recorded
from services.pool.repository.rows import (
    OFFICE_COLUMNS,
    UNIT_COLUMNS,
    UPDATED_UNIT_COLUMNS,
    passed_over_json,
    taken_json,
    to_office,
    to_unit,
    uuid_array,
)


@dataclass(frozen=True, slots=True)
class Handout:
    """One unit handed out: to an office (ASSIGNED, maybe to an assignee) or into a hold;
    from which source, through which receipt, for which request (its history says)."""

    unit_id: uuid.UUID
    company_id: uuid.UUID
    office_id: uuid.UUID
    hold_id: uuid.UUID | None
    assignee: Assignee | None
    source: Source
    receipt_id: uuid.UUID
    request_id: str


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    """What one group of a batch looks for: up to `limit` units for an office."""

    office: Office
    license_type: str
    sources: Sequence[Source]
    limit: int


# Per key, its pool and the named offices of its company.
POOLS_AND_OFFICES = f"""
SELECT k.company_id AS key_company, k.currency AS key_currency, p.enabled_at, o.*
FROM unnest($1::uuid[], $2::char(3)[]) AS k(company_id, currency)
LEFT JOIN pool.pools p ON p.company_id = k.company_id AND p.currency = k.currency
LEFT JOIN LATERAL (SELECT {OFFICE_COLUMNS} FROM pool.offices
                   WHERE company_id = k.company_id AND office_id = ANY($3::uuid[])) o ON true
"""

# Rows are locked, not yet taken: `HAND_OUT` takes the ones handed out.
CANDIDATES = free_list.candidates(ALLOCATION_RULES)

# Removes the units from the free-list (only one transaction can) and makes them
# ASSIGNED to their new office, or HELD (remembering where they were); each one's event
# says ACQUIRED or RESERVED, from which source, through which receipt. The rows taken
# carry their hand-out on, so each unit is joined once, by its key (company, unit).
HAND_OUT = f"""
WITH gone AS (
    DELETE FROM pool.free_units f
    USING unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                 $7::text[], $8::uuid[], $9::text[], $10::uuid[])
        AS a(unit_id, office_id, hold_id, kind, ident, source, receipt_id, request_id,
             company_id)
    WHERE f.company_id = a.company_id AND f.unit_id = a.unit_id
    RETURNING a.*
), taken AS (
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
    WHERE u.company_id = a.company_id AND u.unit_id = a.unit_id
      AND u.state IN ('SPARE', 'POOLED')
    RETURNING {UPDATED_UNIT_COLUMNS}, a.office_id AS for_office_id, a.source, a.receipt_id,
        a.request_id
), history AS (
    {
    recorded(
        "taken",
        "$6",
        f"CASE WHEN hold_id IS NULL THEN '{EventKind.ACQUIRED}' ELSE '{EventKind.RESERVED}' END",
        for_office_id="CASE WHEN hold_id IS NULL THEN NULL ELSE for_office_id END",
        source="source",
        receipt_id="receipt_id",
        request_id="request_id",
    )
}
)
SELECT {UNIT_COLUMNS} FROM taken
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
    SELECT h.id, h.company, h.office, h.currency, h.type, 'PENDING', h.quantity, h.expires,
        h.receipt, $1, h.units::uuid[]
    FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::int[],
                $8::timestamptz[], $9::uuid[], $10::text[])
        AS h(id, company, office, currency, type, quantity, expires, receipt, units)
)
INSERT INTO pool.receipts (receipt_id, company_id, office_id, currency, license_type,
    requested, taken, shortfall, passed_over, hold_id, created_at)
SELECT r.id, r.company, r.office, r.currency, r.type, r.requested, r.taken::jsonb,
    r.shortfall, r.passed::jsonb, r.hold, $1
FROM unnest($11::uuid[], $12::uuid[], $13::uuid[], $14::text[], $15::text[], $16::int[],
            $17::text[], $18::int[], $19::text[], $20::uuid[])
    AS r(id, company, office, currency, type, requested, taken, shortfall, passed, hold)
"""


class Allocations:
    """The statements of an allocation batch, on its connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def pools_and_offices(
        self, keys: Sequence[tuple[uuid.UUID, str]], office_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[tuple[uuid.UUID, str], Pool], dict[uuid.UUID, Office]]:
        """The pool of each (company, currency) and the named offices of those companies,
        in one read."""
        rows = await self._conn.fetch(
            POOLS_AND_OFFICES,
            [company_id for company_id, _ in keys],
            [currency for _, currency in keys],
            list(office_ids),
        )
        pools = {
            (r["key_company"], r["key_currency"]): Pool(
                r["key_company"], r["key_currency"], r["enabled_at"]
            )
            for r in rows
        }
        offices = {r["office_id"]: to_office(r) for r in rows if r["office_id"] is not None}
        return pools, offices

    async def candidates(
        self, queries: Sequence[CandidateQuery], now: datetime
    ) -> list[list[tuple[uuid.UUID, Source]]]:
        """Per query, up to its limit of allocatable units, in allocation order, locked."""
        if not queries:
            return []
        rows = await self._conn.fetch(
            CANDIDATES,
            [q.office.company_id for q in queries],
            [q.office.office_id for q in queries],
            [q.office.currency for q in queries],
            [q.license_type for q in queries],
            *([source in q.sources for q in queries] for source in ALLOCATION_ORDER),
            [q.limit for q in queries],
            now,
        )
        found: list[list[tuple[uuid.UUID, Source]]] = [[] for _ in queries]
        for r in rows:
            found[r["n"] - 1].append((r["unit_id"], ALLOCATION_ORDER[r["rank"] - 1]))
        return found

    async def hand_out(self, handouts: Sequence[Handout], now: datetime) -> dict[uuid.UUID, Unit]:
        """Takes the units of `handouts` (each of its company); returns them as they are
        now, by id."""
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
            [h.source.value for h in handouts],
            [h.receipt_id for h in handouts],
            [h.request_id for h in handouts],
            [h.company_id for h in handouts],
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
        self, now: datetime, holds: Sequence[Hold], receipts: Sequence[Receipt]
    ) -> None:
        """Stores the holds and receipts of one allocation batch (all made at `now`)."""
        if not holds and not receipts:
            return
        await self._conn.execute(
            INSERT_RECORDS,
            now,
            [h.hold_id for h in holds],
            [h.company_id for h in holds],
            [h.office_id for h in holds],
            [h.currency for h in holds],
            [h.license_type for h in holds],
            [len(h.unit_ids) for h in holds],
            [h.expires_at for h in holds],
            [h.receipt_id for h in holds],
            [uuid_array(h.unit_ids) for h in holds],
            [r.receipt_id for r in receipts],
            [r.company_id for r in receipts],
            [r.office_id for r in receipts],
            [r.currency for r in receipts],
            [r.license_type for r in receipts],
            [r.requested for r in receipts],
            [taken_json(r) for r in receipts],
            [r.shortfall for r in receipts],
            [passed_over_json(r) for r in receipts],
            [r.hold_id for r in receipts],
        )
