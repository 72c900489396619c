"""Every SQL statement of the pool service (schema `pool`), on raw asyncpg connections.

Statements are prepared and cached per connection by asyncpg. Writers of one
(company, currency) serialize on a transaction-level advisory lock (`lock`), so
allocation sees a consistent free-list; the free-list row delete is what hands a unit
out, and only one transaction can delete a row, so a unit is never handed out twice
even across replicas.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import Connection as Conn

from libs.common.currency import SUPPORTED_CURRENCIES
from services.pool.domain.allocation import Bystanders
from services.pool.domain.model import (
    Assignee,
    Hold,
    HoldState,
    Office,
    PassedOver,
    PassOverReason,
    PlanKind,
    Pool,
    Receipt,
    Source,
    SourceTake,
    Unit,
    UnitState,
)

UNIT_COLUMNS = """unit_id, company_id, office_id, currency, license_type, state, assignee_kind,
    assignee_id, returned_at, claimable_at, hold_id, held_from, created_at, updated_at"""
HOLD_COLUMNS = """h.hold_id, h.company_id, h.office_id, h.currency, h.license_type, h.state,
    h.expires_at, h.receipt_id, h.created_at, h.resolved_at, h.unit_ids"""
OFFICE_COLUMNS = "company_id, office_id, currency, plan_kind, is_primary"
RECEIPT_COLUMNS = """receipt_id, company_id, office_id, currency, license_type, requested,
    taken, shortfall, passed_over, hold_id, created_at"""

log = logging.getLogger(__name__)

SOURCE_RANK = {Source.OWN_SPARE: 1, Source.OWN_RETURN_IN_GRACE: 2, Source.POOL: 3}
RANK_SOURCE = {rank: source for source, rank in SOURCE_RANK.items()}


def to_unit(row: asyncpg.Record) -> Unit:
    kind = row["assignee_kind"]
    return Unit(
        unit_id=row["unit_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        currency=row["currency"],
        license_type=row["license_type"],
        state=UnitState(row["state"]),
        assignee=Assignee(kind, row["assignee_id"] or "") if kind else None,
        returned_at=row["returned_at"],
        claimable_at=row["claimable_at"],
        hold_id=row["hold_id"],
        held_from=UnitState(row["held_from"]) if row["held_from"] else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_hold(row: asyncpg.Record) -> Hold:
    return Hold(
        hold_id=row["hold_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        currency=row["currency"],
        license_type=row["license_type"],
        state=HoldState(row["state"]),
        unit_ids=tuple(row["unit_ids"]),
        expires_at=row["expires_at"],
        receipt_id=row["receipt_id"],
        created_at=row["created_at"],
        resolved_at=row["resolved_at"],
    )


def to_office(row: asyncpg.Record) -> Office:
    return Office(
        company_id=row["company_id"],
        office_id=row["office_id"],
        currency=row["currency"],
        plan_kind=PlanKind(row["plan_kind"]),
        primary=row["is_primary"],
    )


def to_receipt(row: asyncpg.Record) -> Receipt:
    return Receipt(
        receipt_id=row["receipt_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        currency=row["currency"],
        license_type=row["license_type"],
        requested=row["requested"],
        taken=tuple(
            SourceTake(Source(t["source"]), tuple(uuid.UUID(u) for u in t["unit_ids"]))
            for t in row["taken"]
        ),
        shortfall=row["shortfall"],
        passed_over=tuple(
            PassedOver(
                PassOverReason(p["reason"]),
                p["quantity"],
                datetime.fromisoformat(p["earliest"]) if p.get("earliest") else None,
            )
            for p in row["passed_over"]
        ),
        hold_id=row["hold_id"],
        created_at=row["created_at"],
    )


def receipt_json(receipt: Receipt) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    taken = [
        {"source": t.source.value, "unit_ids": [str(u) for u in t.unit_ids]} for t in receipt.taken
    ]
    passed = [
        {
            "reason": p.reason.value,
            "quantity": p.quantity,
            "earliest": p.earliest_claimable_at.isoformat() if p.earliest_claimable_at else None,
        }
        for p in receipt.passed_over
    ]
    return taken, passed


@dataclass(frozen=True, slots=True)
class Handout:
    """One unit handed out: to an office (ASSIGNED, maybe to an assignee) or into a hold."""

    unit_id: uuid.UUID
    office_id: uuid.UUID
    hold_id: uuid.UUID | None
    assignee: Assignee | None


# --- statements -------------------------------------------------------------------------

# The first statement of a writer's transaction: the lock, and the transaction's instant.
LOCK = """
SELECT coalesce($3::timestamptz, now())
FROM pg_advisory_xact_lock(hashtextextended('pool/' || $1::text || '/' || $2::text, 0))
"""
POOL_AND_OFFICES = f"""
SELECT p.enabled_at, o.*
FROM (SELECT 1) one
LEFT JOIN pool.pools p ON p.company_id = $1 AND p.currency = $2
LEFT JOIN (SELECT {OFFICE_COLUMNS} FROM pool.offices
           WHERE company_id = $1 AND office_id = ANY($3::uuid[])) o ON true
"""
POOL_ENABLED = "SELECT enabled_at FROM pool.pools WHERE company_id = $1 AND currency = $2"

# Candidates for one allocation, in allocation order: the sources of SPEC §8, ranked, with
# the predicates of services.pool.domain.allocation (claimable iff claimable_at <= now).
# Rows are locked, not yet taken: `ASSIGN` takes the ones handed out.
CANDIDATES = """
WITH own_spare AS (
    SELECT unit_id, 1 AS rank, NULL::timestamptz AS ord FROM pool.free_units
    WHERE $5 AND company_id = $1 AND office_id = $2 AND license_type = $4 AND NOT pooled
    ORDER BY unit_id LIMIT $8 FOR UPDATE SKIP LOCKED
), own_in_grace AS (
    SELECT unit_id, 2 AS rank, claimable_at AS ord FROM pool.free_units
    WHERE $6 AND company_id = $1 AND office_id = $2 AND license_type = $4 AND pooled
      AND claimable_at > $9
    ORDER BY claimable_at LIMIT $8 FOR UPDATE SKIP LOCKED
), claimable AS (
    SELECT unit_id, 3 AS rank, returned_at AS ord FROM pool.free_units
    WHERE $7 AND company_id = $1 AND currency = $3 AND license_type = $4 AND pooled
      AND claimable_at <= $9
    ORDER BY returned_at, unit_id LIMIT $8 FOR UPDATE SKIP LOCKED
)
SELECT unit_id, rank FROM (
    SELECT * FROM own_spare UNION ALL SELECT * FROM own_in_grace UNION ALL SELECT * FROM claimable
) candidates
ORDER BY rank, ord, unit_id LIMIT $8
"""

# Hands out units: removes them from the free-list (only one transaction can) and
# makes them ASSIGNED to their new office, or HELD (remembering where they were).
ASSIGN = f"""
WITH a AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
        AS a(unit_id, office_id, hold_id, kind, ident)
), gone AS (
    DELETE FROM pool.free_units f USING a WHERE f.unit_id = a.unit_id RETURNING f.unit_id
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
FROM a JOIN gone USING (unit_id)
WHERE u.unit_id = a.unit_id AND u.state IN ('SPARE', 'POOLED')
RETURNING {", ".join("u." + c.strip() for c in UNIT_COLUMNS.split(","))}
"""

# Units that are no candidates, by reason; each part reads one partial index.
BYSTANDERS = """
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
      AND office_id <> $2 AND claimable_at > $5
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

# Puts held units back exactly as they were (pool units keep claimable_at).
RESTORE_HELD = """
WITH back AS (
    UPDATE pool.units SET state = held_from, held_from = NULL, hold_id = NULL, updated_at = $2
    WHERE hold_id = ANY($1::uuid[])
    RETURNING unit_id, company_id, currency, license_type, office_id, state, returned_at,
        claimable_at
)
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled,
    returned_at, claimable_at)
SELECT unit_id, company_id, currency, license_type, office_id, state = 'POOLED', returned_at,
    claimable_at
FROM back
"""

RESOLVE_HOLD = f"""
WITH resolved AS (
    UPDATE pool.holds SET state = $3, resolved_at = $4
    WHERE hold_id = $1 AND company_id = $2 AND state = 'PENDING'
      AND (CASE WHEN $3 = 'EXPIRED' THEN expires_at <= $4 ELSE expires_at > $4 END)
    RETURNING *
)
SELECT {HOLD_COLUMNS} FROM resolved h
"""

EXPIRE_HOLDS = """
UPDATE pool.holds SET state = 'EXPIRED', resolved_at = $2
WHERE hold_id = ANY($1::uuid[]) AND state = 'PENDING' AND expires_at <= $2
RETURNING hold_id
"""

DUE_HOLDS = """
SELECT hold_id, company_id, currency FROM pool.holds
WHERE state = 'PENDING' AND expires_at <= coalesce($1::timestamptz, now())
ORDER BY expires_at LIMIT $2
"""

COMMIT_ASSIGNED = f"""
WITH held AS (
    SELECT unit_id, row_number() OVER (ORDER BY unit_id) AS n
    FROM pool.units WHERE hold_id = $1
)
UPDATE pool.units u SET state = 'ASSIGNED', hold_id = NULL, held_from = NULL, office_id = $2,
    assignee_kind = a.kind, assignee_id = a.id, returned_at = NULL, claimable_at = NULL,
    updated_at = $3
FROM held LEFT JOIN unnest($4::text[], $5::text[]) WITH ORDINALITY AS a(kind, id, n)
    ON a.n = held.n
WHERE u.unit_id = held.unit_id
RETURNING {", ".join("u." + c.strip() for c in UNIT_COLUMNS.split(","))}
"""

COMMIT_SPARE = """
WITH moved AS (
    UPDATE pool.units SET state = 'SPARE', hold_id = NULL, held_from = NULL, office_id = $2,
        returned_at = NULL, claimable_at = NULL, updated_at = $3
    WHERE hold_id = $1
    RETURNING unit_id, company_id, currency, license_type, office_id
)
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
SELECT unit_id, company_id, currency, license_type, office_id, false FROM moved
RETURNING unit_id
"""

# Unassigned (or spare) units go to the pool with a grace period.
RETURN_TO_POOL = """
WITH moved AS (
    UPDATE pool.units SET state = 'POOLED', assignee_kind = NULL, assignee_id = NULL,
        returned_at = $3, claimable_at = $4, updated_at = $3
    WHERE company_id = $1 AND unit_id = ANY($2::uuid[]) AND state IN ('ASSIGNED', 'SPARE')
    RETURNING unit_id, company_id, currency, license_type, office_id
)
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled,
    returned_at, claimable_at)
SELECT unit_id, company_id, currency, license_type, office_id, true, $3, $4 FROM moved
ON CONFLICT (unit_id) DO UPDATE
    SET pooled = true, returned_at = EXCLUDED.returned_at, claimable_at = EXCLUDED.claimable_at
RETURNING unit_id
"""

REASSIGN = """
UPDATE pool.units u SET assignee_kind = a.kind, assignee_id = a.ident, updated_at = $5
FROM unnest($2::uuid[], $3::text[], $4::text[]) AS a(unit_id, kind, ident)
WHERE u.company_id = $1 AND u.unit_id = a.unit_id AND u.state = 'ASSIGNED'
RETURNING u.unit_id
"""

RETURN_TO_SPARE = """
WITH moved AS (
    UPDATE pool.units SET state = 'SPARE', assignee_kind = NULL, assignee_id = NULL,
        updated_at = $3
    WHERE company_id = $1 AND unit_id = ANY($2::uuid[]) AND state = 'ASSIGNED'
    RETURNING unit_id, company_id, currency, license_type, office_id
)
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
SELECT unit_id, company_id, currency, license_type, office_id, false FROM moved
RETURNING unit_id
"""

ENABLE_POOL = f"""
WITH moved AS (
    UPDATE pool.free_units SET pooled = true, returned_at = $4, claimable_at = $4
    WHERE company_id = $1 AND currency = $2 AND NOT pooled AND license_type = ANY($3::text[])
    RETURNING unit_id
), held AS (
    -- Spare units in a hold right now: released or expired, they come back to the pool.
    UPDATE pool.units SET held_from = 'POOLED', returned_at = $4, claimable_at = $4
    WHERE company_id = $1 AND currency = $2 AND state = 'HELD' AND held_from = 'SPARE'
      AND license_type = ANY($3::text[])
)
UPDATE pool.units u SET state = 'POOLED', returned_at = $4, claimable_at = $4, updated_at = $4
FROM moved WHERE u.unit_id = moved.unit_id
RETURNING {", ".join("u." + c.strip() for c in UNIT_COLUMNS.split(","))}
"""

SPARE_OF_CURRENCY = f"""
SELECT {UNIT_COLUMNS} FROM pool.units
WHERE company_id = $1 AND currency = $2 AND state = 'SPARE' AND license_type = ANY($3::text[])
ORDER BY created_at, unit_id
"""

POOL_CONTENTS = """
SELECT license_type, count(*) FILTER (WHERE claimable_at <= $3) AS claimable,
    count(*) FILTER (WHERE claimable_at > $3) AS in_grace
FROM pool.free_units WHERE company_id = $1 AND currency = $2 AND pooled
GROUP BY license_type ORDER BY license_type
"""

AVAILABILITY = """
SELECT license_type,
    count(*) FILTER (WHERE NOT pooled AND office_id = $2) AS own_spare,
    count(*) FILTER (WHERE pooled AND office_id = $2 AND claimable_at > $4) AS own_in_grace,
    count(*) FILTER (WHERE pooled AND claimable_at <= $4) AS claimable
FROM pool.free_units
WHERE company_id = $1 AND currency = $3 AND (cardinality($5::text[]) = 0 OR license_type = ANY($5))
GROUP BY license_type
"""

REMOVAL_SCHEDULED_COUNTS = """
SELECT license_type, count(*) AS scheduled FROM pool.units
WHERE company_id = $1 AND office_id = $2 AND state = 'REMOVAL_SCHEDULED'
    AND (cardinality($3::text[]) = 0 OR license_type = ANY($3))
GROUP BY license_type
"""

ADD_UNITS = f"""
WITH new AS (
    INSERT INTO pool.units (unit_id, company_id, office_id, currency, license_type, state,
        created_at, updated_at)
    SELECT id, $1, $2, $3, $4, 'SPARE', $5, $5 FROM unnest($6::uuid[]) AS id
    RETURNING {UNIT_COLUMNS}
), free AS (
    INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
    SELECT unit_id, company_id, currency, license_type, office_id, false FROM new
)
SELECT * FROM new ORDER BY unit_id
"""

MARK_FOR_REMOVAL = f"""
WITH picked AS (
    SELECT unit_id FROM pool.free_units
    WHERE company_id = $1 AND office_id = $2 AND license_type = $3 AND NOT pooled
    ORDER BY unit_id LIMIT $4 FOR UPDATE SKIP LOCKED
), enough AS (
    SELECT count(*) >= $4 AS ok FROM picked
), gone AS (
    DELETE FROM pool.free_units f USING picked, enough
    WHERE enough.ok AND f.unit_id = picked.unit_id
    RETURNING f.unit_id
)
UPDATE pool.units u SET state = 'REMOVAL_SCHEDULED', updated_at = $5
FROM gone WHERE u.unit_id = gone.unit_id AND u.state = 'SPARE'
RETURNING {", ".join("u." + c.strip() for c in UNIT_COLUMNS.split(","))}
"""

RESTORE_FROM_REMOVAL = f"""
WITH picked AS (
    SELECT unit_id FROM pool.units
    WHERE company_id = $1 AND office_id = $2 AND license_type = $3
      AND state = 'REMOVAL_SCHEDULED'
    ORDER BY unit_id LIMIT $4 FOR UPDATE
), moved AS (
    UPDATE pool.units u SET state = 'SPARE', updated_at = $5
    FROM picked WHERE u.unit_id = picked.unit_id
    RETURNING {", ".join("u." + c.strip() for c in UNIT_COLUMNS.split(","))}
), free AS (
    INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
    SELECT unit_id, company_id, currency, license_type, office_id, false FROM moved
)
SELECT * FROM moved
"""

TERMINATE = f"""
WITH gone AS (
    DELETE FROM pool.free_units WHERE company_id = $1 AND unit_id = ANY($2::uuid[])
)
UPDATE pool.units SET state = 'TERMINATED', returned_at = NULL, claimable_at = NULL,
    updated_at = $3
WHERE company_id = $1 AND unit_id = ANY($2::uuid[])
  AND state IN ('SPARE', 'POOLED', 'REMOVAL_SCHEDULED')
RETURNING {UNIT_COLUMNS}
"""

SNAPSHOT = """
SELECT office_id, currency, license_type, state, held_from, count(*) AS n
FROM pool.units
WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2) AND state <> 'TERMINATED'
GROUP BY office_id, currency, license_type, state, held_from
ORDER BY currency, office_id, license_type
"""


class PoolRepository:
    """The pool schema; every method runs on the caller's connection and transaction."""

    # --- transactions -------------------------------------------------------------------

    async def lock(
        self, conn: Conn, company_id: uuid.UUID, currency: str, clock_now: datetime | None
    ) -> datetime:
        """Serializes writers of one (company, currency) until the transaction ends;
        returns the transaction's instant (the clock's, or the database's)."""
        now: datetime = await conn.fetchval(LOCK, str(company_id), currency, clock_now)
        return now

    async def now(self, conn: Conn, clock_now: datetime | None) -> datetime:
        """The instant for a reader: the clock's, or the database's."""
        value: datetime = await conn.fetchval("SELECT coalesce($1::timestamptz, now())", clock_now)
        return value

    async def refresh_statistics(self, conn: Conn) -> None:
        """Re-reads the statistics of the free-list and units after a bulk change, so the
        next picks are planned on the new sizes instead of waiting for autovacuum."""
        try:
            await conn.execute("ANALYZE pool.free_units, pool.units")
        except asyncpg.PostgresError:  # not the owner: autovacuum will do it later
            log.warning("could not analyze the pool tables", exc_info=True)

    # --- offices ------------------------------------------------------------------------

    async def get_office(
        self, conn: Conn, company_id: uuid.UUID, office_id: uuid.UUID
    ) -> Office | None:
        row = await conn.fetchrow(
            f"SELECT {OFFICE_COLUMNS} FROM pool.offices WHERE company_id = $1 AND office_id = $2",
            company_id,
            office_id,
        )
        return to_office(row) if row else None

    async def pool_and_offices(
        self, conn: Conn, company_id: uuid.UUID, currency: str, office_ids: Sequence[uuid.UUID]
    ) -> tuple[Pool, dict[uuid.UUID, Office]]:
        """The pool of the currency and the named offices of the company, in one read."""
        rows = await conn.fetch(POOL_AND_OFFICES, company_id, currency, list(office_ids))
        offices = {r["office_id"]: to_office(r) for r in rows if r["office_id"] is not None}
        return Pool(company_id, currency, rows[0]["enabled_at"]), offices

    async def office_owner(self, conn: Conn, office_id: uuid.UUID) -> uuid.UUID | None:
        value: uuid.UUID | None = await conn.fetchval(
            "SELECT company_id FROM pool.offices WHERE office_id = $1", office_id
        )
        return value

    async def put_office(self, conn: Conn, office: Office) -> Office | None:
        """Creates or updates the office; None if its id belongs to another company."""
        if office.primary:
            await conn.execute(
                "UPDATE pool.offices SET is_primary = false"
                " WHERE company_id = $1 AND is_primary AND office_id <> $2",
                office.company_id,
                office.office_id,
            )
        row = await conn.fetchrow(
            f"""
            INSERT INTO pool.offices ({OFFICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (office_id) DO UPDATE SET currency = EXCLUDED.currency,
                plan_kind = EXCLUDED.plan_kind, is_primary = EXCLUDED.is_primary
                WHERE pool.offices.company_id = EXCLUDED.company_id  -- never another tenant's
            RETURNING {OFFICE_COLUMNS}
            """,
            office.company_id,
            office.office_id,
            office.currency,
            office.plan_kind.value,
            office.primary,
        )
        return to_office(row) if row else None

    async def list_offices(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        currency: str | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[Office]:
        rows = await conn.fetch(
            f"""
            SELECT {OFFICE_COLUMNS} FROM pool.offices
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

    async def legacy_offices(
        self, conn: Conn, company_id: uuid.UUID, currency: str
    ) -> list[uuid.UUID]:
        rows = await conn.fetch(
            "SELECT office_id FROM pool.offices"
            " WHERE company_id = $1 AND currency = $2 AND plan_kind = 'LEGACY'",
            company_id,
            currency,
        )
        return [r["office_id"] for r in rows]

    async def offices_of_currency(
        self, conn: Conn, company_id: uuid.UUID, currency: str
    ) -> list[uuid.UUID]:
        rows = await conn.fetch(
            "SELECT office_id FROM pool.offices WHERE company_id = $1 AND currency = $2"
            " ORDER BY office_id",
            company_id,
            currency,
        )
        return [r["office_id"] for r in rows]

    async def office_has_live_units(self, conn: Conn, office_id: uuid.UUID) -> bool:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pool.units"
            " WHERE office_id = $1 AND state <> 'TERMINATED')",
            office_id,
        )
        return found

    # --- pools --------------------------------------------------------------------------

    async def get_pool(self, conn: Conn, company_id: uuid.UUID, currency: str) -> Pool:
        enabled_at = await conn.fetchval(POOL_ENABLED, company_id, currency)
        return Pool(company_id, currency, enabled_at)

    async def insert_pool(
        self, conn: Conn, company_id: uuid.UUID, currency: str, now: datetime
    ) -> Pool:
        await conn.execute(
            "INSERT INTO pool.pools (company_id, currency, enabled_at) VALUES ($1, $2, $3)",
            company_id,
            currency,
            now,
        )
        return Pool(company_id, currency, now)

    async def pool_spare_units(
        self, conn: Conn, company_id: uuid.UUID, currency: str, poolable_types: Sequence[str]
    ) -> list[Unit]:
        rows = await conn.fetch(SPARE_OF_CURRENCY, company_id, currency, list(poolable_types))
        return [to_unit(r) for r in rows]

    async def move_spare_into_pool(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        currency: str,
        poolable_types: Sequence[str],
        now: datetime,
    ) -> list[Unit]:
        rows = await conn.fetch(ENABLE_POOL, company_id, currency, list(poolable_types), now)
        return sorted((to_unit(r) for r in rows), key=lambda u: (u.created_at, u.unit_id))

    async def pool_contents(
        self, conn: Conn, company_id: uuid.UUID, currency: str, now: datetime
    ) -> list[tuple[str, int, int]]:
        rows = await conn.fetch(POOL_CONTENTS, company_id, currency, now)
        return [(r["license_type"], r["claimable"], r["in_grace"]) for r in rows]

    async def availability(
        self, conn: Conn, office: Office, license_types: Sequence[str], now: datetime
    ) -> dict[str, tuple[int, int, int, int]]:
        """Per type: own spare, own returns in grace, pool claimable, removal scheduled."""
        types = list(license_types)
        found: dict[str, list[int]] = {}
        for row in await conn.fetch(
            AVAILABILITY, office.company_id, office.office_id, office.currency, now, types
        ):
            found[row["license_type"]] = [
                row["own_spare"],
                row["own_in_grace"],
                row["claimable"],
                0,
            ]
        for row in await conn.fetch(
            REMOVAL_SCHEDULED_COUNTS, office.company_id, office.office_id, types
        ):
            found.setdefault(row["license_type"], [0, 0, 0, 0])[3] = row["scheduled"]
        for code in types:
            found.setdefault(code, [0, 0, 0, 0])
        return {code: (a, b, c, d) for code, (a, b, c, d) in sorted(found.items())}

    # --- units --------------------------------------------------------------------------

    async def add_units(
        self, conn: Conn, office: Office, license_type: str, quantity: int, now: datetime
    ) -> list[Unit]:
        ids = [uuid.uuid4() for _ in range(quantity)]
        rows = await conn.fetch(
            ADD_UNITS, office.company_id, office.office_id, office.currency, license_type, now, ids
        )
        return [to_unit(r) for r in rows]

    async def candidates(
        self,
        conn: Conn,
        office: Office,
        license_type: str,
        sources: Sequence[Source],
        limit: int,
        now: datetime,
    ) -> list[tuple[uuid.UUID, Source]]:
        """Up to `limit` allocatable units for the office, in allocation order, locked."""
        rows = await conn.fetch(
            CANDIDATES,
            office.company_id,
            office.office_id,
            office.currency,
            license_type,
            Source.OWN_SPARE in sources,
            Source.OWN_RETURN_IN_GRACE in sources,
            Source.POOL in sources,
            limit,
            now,
        )
        return [(r["unit_id"], RANK_SOURCE[r["rank"]]) for r in rows]

    async def assign(
        self, conn: Conn, handouts: Sequence[Handout], now: datetime
    ) -> dict[uuid.UUID, Unit]:
        """Takes the units of `handouts`; returns them as they are now, by id."""
        if not handouts:
            return {}
        rows = await conn.fetch(
            ASSIGN,
            [h.unit_id for h in handouts],
            [h.office_id for h in handouts],
            [h.hold_id for h in handouts],
            [h.assignee.kind if h.assignee else None for h in handouts],
            [h.assignee.id if h.assignee else None for h in handouts],
            now,
        )
        return {r["unit_id"]: to_unit(r) for r in rows}

    async def bystanders(
        self,
        conn: Conn,
        office: Office,
        license_type: str,
        now: datetime,
        hold_id: uuid.UUID | None,
    ) -> Bystanders:
        others = sorted(SUPPORTED_CURRENCIES - {office.currency})
        row = await conn.fetchrow(
            BYSTANDERS,
            office.company_id,
            office.office_id,
            office.currency,
            license_type,
            now,
            hold_id,
            others,
        )
        return Bystanders(
            other_office_spare=row["spare"],
            other_office_in_grace=row["in_grace"],
            earliest_claimable_at=row["earliest"],
            held=row["held"],
            other_currency=row["other_currency"],
        )

    async def units_by_id(
        self, conn: Conn, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[Unit]:
        rows = await conn.fetch(
            f"SELECT {UNIT_COLUMNS} FROM pool.units"
            " WHERE company_id = $1 AND unit_id = ANY($2::uuid[]) ORDER BY unit_id",
            company_id,
            list(unit_ids),
        )
        return [to_unit(r) for r in rows]

    async def list_units(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        license_type: str | None,
        state: UnitState | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Unit]:
        rows = await conn.fetch(
            f"""
            SELECT {UNIT_COLUMNS} FROM pool.units
            WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
              AND ($3::text IS NULL OR currency = $3) AND ($4::text IS NULL OR license_type = $4)
              AND ($5::text IS NULL OR state = $5)
              AND ($6::timestamptz IS NULL OR (created_at, unit_id) > ($6, $7::uuid))
            ORDER BY created_at, unit_id LIMIT $8
            """,
            company_id,
            office_id,
            currency,
            license_type,
            state.value if state else None,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_unit(r) for r in rows]

    async def return_to_pool(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        unit_ids: Sequence[uuid.UUID],
        now: datetime,
        claimable_at: datetime,
    ) -> int:
        rows = await conn.fetch(RETURN_TO_POOL, company_id, list(unit_ids), now, claimable_at)
        return len(rows)

    async def reassign(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, Assignee]],
        now: datetime,
    ) -> int:
        rows = await conn.fetch(
            REASSIGN,
            company_id,
            [unit_id for unit_id, _ in reassignments],
            [a.kind for _, a in reassignments],
            [a.id for _, a in reassignments],
            now,
        )
        return len(rows)

    async def return_to_spare(
        self, conn: Conn, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], now: datetime
    ) -> int:
        rows = await conn.fetch(RETURN_TO_SPARE, company_id, list(unit_ids), now)
        return len(rows)

    async def mark_for_removal(
        self, conn: Conn, office: Office, license_type: str, quantity: int, now: datetime
    ) -> list[Unit]:
        """Takes exactly `quantity` of the office's spare units, or none."""
        rows = await conn.fetch(
            MARK_FOR_REMOVAL, office.company_id, office.office_id, license_type, quantity, now
        )
        return sorted((to_unit(r) for r in rows), key=lambda u: u.unit_id)

    async def restore_from_removal(
        self, conn: Conn, office: Office, license_type: str, quantity: int, now: datetime
    ) -> list[Unit]:
        """Makes up to `quantity` scheduled units spare again."""
        rows = await conn.fetch(
            RESTORE_FROM_REMOVAL, office.company_id, office.office_id, license_type, quantity, now
        )
        return sorted((to_unit(r) for r in rows), key=lambda u: u.unit_id)

    async def terminate(
        self, conn: Conn, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], now: datetime
    ) -> list[Unit]:
        rows = await conn.fetch(TERMINATE, company_id, list(unit_ids), now)
        return sorted((to_unit(r) for r in rows), key=lambda u: u.unit_id)

    async def snapshot(
        self, conn: Conn, company_id: uuid.UUID, currency: str | None
    ) -> list[asyncpg.Record]:
        return list(await conn.fetch(SNAPSHOT, company_id, currency))

    # --- holds and receipts ---------------------------------------------------------------

    async def insert_records(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        currency: str,
        now: datetime,
        holds: Sequence[Hold],
        receipts: Sequence[Receipt],
    ) -> None:
        """Stores the holds and receipts of one allocation batch (all made at `now`)."""
        if not holds and not receipts:
            return
        jsons = [receipt_json(r) for r in receipts]
        await conn.execute(
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
            [json.dumps(taken) for taken, _ in jsons],
            [r.shortfall for r in receipts],
            [json.dumps(passed) for _, passed in jsons],
            [r.hold_id for r in receipts],
            ["{" + ",".join(str(u) for u in h.unit_ids) + "}" for h in holds],
        )

    async def get_receipt(
        self, conn: Conn, company_id: uuid.UUID, receipt_id: uuid.UUID
    ) -> Receipt | None:
        row = await conn.fetchrow(
            f"SELECT {RECEIPT_COLUMNS} FROM pool.receipts"
            " WHERE company_id = $1 AND receipt_id = $2",
            company_id,
            receipt_id,
        )
        return to_receipt(row) if row else None

    async def get_hold(self, conn: Conn, company_id: uuid.UUID, hold_id: uuid.UUID) -> Hold | None:
        row = await conn.fetchrow(
            f"SELECT {HOLD_COLUMNS} FROM pool.holds h WHERE h.company_id = $1 AND h.hold_id = $2",
            company_id,
            hold_id,
        )
        return to_hold(row) if row else None

    async def resolve_hold(
        self, conn: Conn, company_id: uuid.UUID, hold_id: uuid.UUID, state: HoldState, now: datetime
    ) -> Hold | None:
        """Moves a PENDING hold to `state` (COMMITTED/RELEASED only before its expiry,
        EXPIRED only after); None if it was not eligible. Resolves at most once."""
        row = await conn.fetchrow(RESOLVE_HOLD, hold_id, company_id, state.value, now)
        return to_hold(row) if row else None

    async def restore_held(self, conn: Conn, hold_ids: Sequence[uuid.UUID], now: datetime) -> None:
        await conn.execute(RESTORE_HELD, list(hold_ids), now)

    async def commit_assigned(
        self, conn: Conn, hold: Hold, assignees: Sequence[Assignee], now: datetime
    ) -> list[Unit]:
        rows = await conn.fetch(
            COMMIT_ASSIGNED,
            hold.hold_id,
            hold.office_id,
            now,
            [a.kind for a in assignees],
            [a.id for a in assignees],
        )
        return sorted((to_unit(r) for r in rows), key=lambda u: u.unit_id)

    async def commit_spare(self, conn: Conn, hold: Hold, now: datetime) -> None:
        await conn.fetch(COMMIT_SPARE, hold.hold_id, hold.office_id, now)

    async def due_holds(
        self, conn: Conn, clock_now: datetime | None, limit: int
    ) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        rows = await conn.fetch(DUE_HOLDS, clock_now, limit)
        return [(r["hold_id"], r["company_id"], r["currency"]) for r in rows]

    async def expire_holds(
        self, conn: Conn, hold_ids: Sequence[uuid.UUID], now: datetime
    ) -> list[uuid.UUID]:
        rows = await conn.fetch(EXPIRE_HOLDS, list(hold_ids), now)
        expired = [r["hold_id"] for r in rows]
        if expired:
            await self.restore_held(conn, expired, now)
        return expired
