"""Units of the pool schema, and their free-list rows.

Every SPARE or POOLED unit has one row in `pool.free_units`; each statement that changes a
unit's state keeps that row in step. Statements that move units name the states they move
them from, so a unit that changed meanwhile is not moved (the caller compares counts).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.pool.domain.allocation import ALLOCATION_RULES
from services.pool.domain.history import Cause, EventKind
from services.pool.domain.model import (
    Assignee,
    Availability,
    Office,
    Source,
    Unit,
    UnitCount,
    UnitState,
)
from services.pool.repository import free_list
from services.pool.repository.history import recorded
from services.pool.repository.rows import (
    UNIT_COLUMNS,
    UPDATED_UNIT_COLUMNS,
    to_unit,
    to_unit_count,
    to_units_by_id,
)

ADD = f"""
WITH new AS (
    INSERT INTO pool.units (unit_id, company_id, office_id, currency, license_type, state,
        created_at, updated_at)
    SELECT id, $1, $2, $3, $4, 'SPARE', $5, $5 FROM unnest($6::uuid[]) AS id
    RETURNING {UNIT_COLUMNS}
), free AS (
    INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
    SELECT unit_id, company_id, currency, license_type, office_id, false FROM new
), history AS (
    {recorded("new", "$5", EventKind.CREATED, request_id="$7::text", origin="$8::text")}
)
SELECT * FROM new ORDER BY unit_id
"""
BY_ID = f"""
SELECT {UNIT_COLUMNS} FROM pool.units
WHERE company_id = $1 AND unit_id = ANY($2::uuid[]) ORDER BY unit_id
"""
LIST = f"""
SELECT {UNIT_COLUMNS} FROM pool.units
WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
  AND ($3::text IS NULL OR currency = $3) AND ($4::text IS NULL OR license_type = $4)
  AND ($5::text IS NULL OR state = $5)
  AND ($6::timestamptz IS NULL OR (created_at, unit_id) > ($6, $7::uuid))
ORDER BY created_at, unit_id LIMIT $8
"""
HAS_LIVE = """
SELECT EXISTS (SELECT 1 FROM pool.units
               WHERE company_id = $1 AND office_id = $2 AND state <> 'TERMINATED')
"""
REASSIGN = f"""
WITH moved AS (
    UPDATE pool.units u SET assignee_kind = a.kind, assignee_id = a.ident, updated_at = $5
    FROM unnest($2::uuid[], $3::text[], $4::text[]) AS a(unit_id, kind, ident)
    WHERE u.company_id = $1 AND u.unit_id = a.unit_id AND u.state = 'ASSIGNED'
    RETURNING {UPDATED_UNIT_COLUMNS}
), history AS (
    {recorded("moved", "$5", EventKind.REASSIGNED, request_id="$6::text")}
)
SELECT unit_id FROM moved
"""
# Unassigned (or spare) units go to the pool with a grace period.
RETURN_TO_POOL = f"""
WITH moved AS (
    UPDATE pool.units SET state = 'POOLED', assignee_kind = NULL, assignee_id = NULL,
        returned_at = $3, claimable_at = $4, updated_at = $3
    WHERE company_id = $1 AND unit_id = ANY($2::uuid[]) AND state IN ('ASSIGNED', 'SPARE')
    RETURNING {UNIT_COLUMNS}
), history AS (
    {recorded("moved", "$3", EventKind.RETURNED, request_id="$5::text")}
)
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled,
    returned_at, claimable_at)
SELECT unit_id, company_id, currency, license_type, office_id, true, $3, $4 FROM moved
ON CONFLICT (company_id, unit_id) DO UPDATE
    SET pooled = true, returned_at = EXCLUDED.returned_at, claimable_at = EXCLUDED.claimable_at
RETURNING unit_id
"""
RETURN_TO_SPARE = f"""
WITH moved AS (
    UPDATE pool.units SET state = 'SPARE', assignee_kind = NULL, assignee_id = NULL,
        updated_at = $3
    WHERE company_id = $1 AND unit_id = ANY($2::uuid[]) AND state = 'ASSIGNED'
    RETURNING {UNIT_COLUMNS}
), history AS (
    {recorded("moved", "$3", EventKind.RETURNED, request_id="$4::text")}
)
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
SELECT unit_id, company_id, currency, license_type, office_id, false FROM moved
RETURNING unit_id
"""
# Exactly $4 of the office's spare units, or none.
MARK_FOR_REMOVAL = f"""
WITH picked AS (
    SELECT unit_id FROM pool.free_units
    WHERE company_id = $1 AND office_id = $2 AND license_type = $3 AND NOT pooled
    ORDER BY unit_id LIMIT $4 FOR UPDATE SKIP LOCKED
), enough AS (
    SELECT count(*) >= $4 AS ok FROM picked
), gone AS (
    DELETE FROM pool.free_units f USING picked, enough
    WHERE enough.ok AND f.company_id = $1 AND f.unit_id = picked.unit_id
    RETURNING f.unit_id
), marked AS (
    UPDATE pool.units u SET state = 'REMOVAL_SCHEDULED', updated_at = $5
    FROM gone WHERE u.company_id = $1 AND u.unit_id = gone.unit_id AND u.state = 'SPARE'
    RETURNING {UPDATED_UNIT_COLUMNS}
), history AS (
    {recorded("marked", "$5", EventKind.REMOVAL_SCHEDULED, request_id="$6::text")}
)
SELECT * FROM marked
"""
RESTORE_FROM_REMOVAL = f"""
WITH picked AS (
    SELECT unit_id FROM pool.units
    WHERE company_id = $1 AND office_id = $2 AND license_type = $3
      AND state = 'REMOVAL_SCHEDULED'
    ORDER BY unit_id LIMIT $4 FOR UPDATE
), moved AS (
    UPDATE pool.units u SET state = 'SPARE', updated_at = $5
    FROM picked WHERE u.company_id = $1 AND u.unit_id = picked.unit_id
    RETURNING {UPDATED_UNIT_COLUMNS}
), free AS (
    INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
    SELECT unit_id, company_id, currency, license_type, office_id, false FROM moved
), history AS (
    {recorded("moved", "$5", EventKind.RESTORED, request_id="$6::text")}
)
SELECT * FROM moved
"""
TERMINATE = f"""
WITH gone AS (
    DELETE FROM pool.free_units WHERE company_id = $1 AND unit_id = ANY($2::uuid[])
), ended AS (
    UPDATE pool.units SET state = 'TERMINATED', returned_at = NULL, claimable_at = NULL,
        updated_at = $3
    WHERE company_id = $1 AND unit_id = ANY($2::uuid[])
      AND state IN ('SPARE', 'POOLED', 'REMOVAL_SCHEDULED')
    RETURNING {UNIT_COLUMNS}
), history AS (
    {recorded("ended", "$3", EventKind.TERMINATED, request_id="$4::text")}
)
SELECT * FROM ended
"""
SPARE_OF_CURRENCY = f"""
SELECT {UNIT_COLUMNS} FROM pool.units
WHERE company_id = $1 AND currency = $2 AND state = 'SPARE' AND license_type = ANY($3::text[])
ORDER BY created_at, unit_id
"""
# Spare units of the types enter the pool, claimable from $4.
INTO_POOL = f"""
WITH moved AS (
    UPDATE pool.free_units SET pooled = true, returned_at = $4, claimable_at = $4
    WHERE company_id = $1 AND currency = $2 AND NOT pooled AND license_type = ANY($3::text[])
    RETURNING unit_id
), held AS (
    -- Spare units in a hold right now: released or expired, they come back to the pool.
    UPDATE pool.units SET held_from = 'POOLED', returned_at = $4, claimable_at = $4
    WHERE company_id = $1 AND currency = $2 AND state = 'HELD' AND held_from = 'SPARE'
      AND license_type = ANY($3::text[])
    RETURNING {UNIT_COLUMNS}
), pooled AS (
    UPDATE pool.units u SET state = 'POOLED', returned_at = $4, claimable_at = $4,
        updated_at = $4
    FROM moved WHERE u.company_id = $1 AND u.unit_id = moved.unit_id
    RETURNING {UPDATED_UNIT_COLUMNS}
), history AS (
    {recorded("pooled", "$4", EventKind.POOLED, request_id="$5::text")}
), held_history AS (
    {recorded("held", "$4", EventKind.POOLED, request_id="$5::text")}
)
SELECT * FROM pooled
"""
# The counts the units' triggers keep (migration 0009): a few rows however many units.
COUNTS = """
SELECT office_id, currency, license_type, state, nullif(held_from, '') AS held_from, n
FROM pool.unit_counts
WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2) AND state <> 'TERMINATED'
    AND n > 0
ORDER BY currency, office_id, license_type
"""
OFFERED = free_list.counts_by_source(ALLOCATION_RULES)
REMOVAL_SCHEDULED = """
SELECT license_type, count(*) AS scheduled FROM pool.units
WHERE company_id = $1 AND office_id = $2 AND state = 'REMOVAL_SCHEDULED'
    AND (cardinality($3::text[]) = 0 OR license_type = ANY($3))
GROUP BY license_type
"""


def _by_creation(rows: list[asyncpg.Record]) -> list[Unit]:
    return sorted((to_unit(r) for r in rows), key=lambda u: (u.created_at, u.unit_id))


class Units:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(
        self, office: Office, license_type: str, quantity: int, now: datetime, cause: Cause
    ) -> list[Unit]:
        """New SPARE units of the office."""
        ids = [uuid.uuid4() for _ in range(quantity)]
        rows = await self._conn.fetch(
            ADD,
            office.company_id,
            office.office_id,
            office.currency,
            license_type,
            now,
            ids,
            cause.request_id,
            cause.origin,
        )
        return [to_unit(r) for r in rows]

    async def by_id(self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]) -> list[Unit]:
        """The company's units among `unit_ids`, by id."""
        return [to_unit(r) for r in await self._conn.fetch(BY_ID, company_id, list(unit_ids))]

    async def page(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        license_type: str | None,
        state: UnitState | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Unit]:
        """A page of the company's units, by creation (then id), after `after`."""
        rows = await self._conn.fetch(
            LIST,
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

    async def office_has_live_units(self, company_id: uuid.UUID, office_id: uuid.UUID) -> bool:
        found: bool = await self._conn.fetchval(HAS_LIVE, company_id, office_id)
        return found

    async def reassign(
        self,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, Assignee]],
        now: datetime,
        cause: Cause,
    ) -> int:
        """ASSIGNED units get their new assignees; returns how many."""
        rows = await self._conn.fetch(
            REASSIGN,
            company_id,
            [unit_id for unit_id, _ in reassignments],
            [a.kind for _, a in reassignments],
            [a.id for _, a in reassignments],
            now,
            cause.request_id,
        )
        return len(rows)

    async def return_to_pool(
        self,
        company_id: uuid.UUID,
        unit_ids: Sequence[uuid.UUID],
        now: datetime,
        claimable_at: datetime,
        cause: Cause,
    ) -> int:
        """ASSIGNED or SPARE units become POOLED, claimable from `claimable_at`."""
        rows = await self._conn.fetch(
            RETURN_TO_POOL, company_id, list(unit_ids), now, claimable_at, cause.request_id
        )
        return len(rows)

    async def return_to_spare(
        self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], now: datetime, cause: Cause
    ) -> int:
        """ASSIGNED units become SPARE of their office."""
        rows = await self._conn.fetch(
            RETURN_TO_SPARE, company_id, list(unit_ids), now, cause.request_id
        )
        return len(rows)

    async def mark_for_removal(
        self, office: Office, license_type: str, quantity: int, now: datetime, cause: Cause
    ) -> list[Unit]:
        """Takes exactly `quantity` of the office's spare units, or none."""
        return await self._of_office(MARK_FOR_REMOVAL, office, license_type, quantity, now, cause)

    async def restore_from_removal(
        self, office: Office, license_type: str, quantity: int, now: datetime, cause: Cause
    ) -> list[Unit]:
        """Makes up to `quantity` scheduled units spare again."""
        return await self._of_office(
            RESTORE_FROM_REMOVAL, office, license_type, quantity, now, cause
        )

    async def _of_office(
        self,
        statement: str,
        office: Office,
        license_type: str,
        quantity: int,
        now: datetime,
        cause: Cause,
    ) -> list[Unit]:
        """A change of `quantity` units of one office and type, by unit id."""
        rows = await self._conn.fetch(
            statement,
            office.company_id,
            office.office_id,
            license_type,
            quantity,
            now,
            cause.request_id,
        )
        return to_units_by_id(rows)

    async def terminate(
        self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], now: datetime, cause: Cause
    ) -> list[Unit]:
        """SPARE, POOLED or REMOVAL_SCHEDULED units become TERMINATED."""
        rows = await self._conn.fetch(TERMINATE, company_id, list(unit_ids), now, cause.request_id)
        return to_units_by_id(rows)

    async def spare_of_currency(
        self, company_id: uuid.UUID, currency: str, license_types: Sequence[str]
    ) -> list[Unit]:
        rows = await self._conn.fetch(SPARE_OF_CURRENCY, company_id, currency, list(license_types))
        return [to_unit(r) for r in rows]

    async def move_into_pool(
        self,
        company_id: uuid.UUID,
        currency: str,
        license_types: Sequence[str],
        claimable_at: datetime,
        cause: Cause,
    ) -> list[Unit]:
        """SPARE units of the types become POOLED (and units held from SPARE will go back
        to the pool), claimable from `claimable_at`; returns the moved ones."""
        rows = await self._conn.fetch(
            INTO_POOL, company_id, currency, list(license_types), claimable_at, cause.request_id
        )
        return _by_creation(rows)

    async def counts(self, company_id: uuid.UUID, currency: str | None) -> list[UnitCount]:
        """Live units by office, type, state and held-from state."""
        return [to_unit_count(r) for r in await self._conn.fetch(COUNTS, company_id, currency)]

    async def availability(
        self, office: Office, license_types: Sequence[str], now: datetime
    ) -> list[Availability]:
        """Per type (all the office's, or those named): what each source offers the office
        now, and its units scheduled for removal."""
        types = list(license_types)
        offered: dict[str, dict[Source, int]] = {}
        for row in await self._conn.fetch(
            OFFERED, office.company_id, office.office_id, office.currency, now, types
        ):
            offered[row["license_type"]] = {
                rule.source: row[f"s{rank}"] for rank, rule in enumerate(ALLOCATION_RULES, 1)
            }
        scheduled: dict[str, int] = {
            row["license_type"]: row["scheduled"]
            for row in await self._conn.fetch(
                REMOVAL_SCHEDULED, office.company_id, office.office_id, types
            )
        }
        return [
            Availability(
                code,
                offered.get(code, {}).get(Source.OWN_SPARE, 0),
                offered.get(code, {}).get(Source.OWN_RETURN_IN_GRACE, 0),
                offered.get(code, {}).get(Source.POOL, 0),
                scheduled.get(code, 0),
            )
            for code in sorted({*types, *offered, *scheduled})
        ]
