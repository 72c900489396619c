"""Unit history in the pool schema: the event rows every unit-changing statement writes
(`recorded`, a part of those statements), and the reads of history: the events of a
unit, office or company, the counts as of an instant, and the purge.

An event is written by the statement that makes the change, from the rows it changed
(set-based, in the same statement), so it commits or rolls back with the change.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.pool.domain.history import EventKind, EventQuery, UnitEvent
from services.pool.domain.model import Assignee, Source, UnitCount, UnitState
from services.pool.repository.rows import to_unit_count

# The event's columns that are the unit's own after the change, by the same names.
_UNIT_FIELDS = (
    "company_id",
    "unit_id",
    "state",
    "office_id",
    "held_from",
    "assignee_kind",
    "assignee_id",
    "claimable_at",
    "hold_id",
)


def recorded(rows: str, now: str, kind: EventKind | str, **columns: str) -> str:
    """The INSERT of one event per row of `rows` (a CTE of changed units, with the unit
    columns above), at the instant `now`; `kind` is an EventKind or an SQL expression;
    `columns` give the other event columns (or replace unit ones) as SQL expressions."""
    kind_sql = f"'{kind.value}'" if isinstance(kind, EventKind) else kind
    values = {name: name for name in _UNIT_FIELDS if name != "company_id"} | {
        "occurred_at": f"{now}::timestamptz",
        "kind": kind_sql,
    }
    values.update(columns)
    return (
        f"INSERT INTO pool.unit_events (company_id, {', '.join(values)})\n"
        f"    SELECT company_id, {', '.join(values.values())} FROM {rows}"
    )


EVENT_COLUMNS = """event_id, company_id, unit_id, occurred_at, kind, state, office_id,
    held_from, for_office_id, source, assignee_kind, assignee_id, claimable_at, hold_id,
    receipt_id, request_id, origin"""

LIST = f"""
SELECT {EVENT_COLUMNS} FROM pool.unit_events
WHERE company_id = $1 AND ($2::uuid IS NULL OR unit_id = $2)
  AND ($3::uuid IS NULL OR office_id = $3 OR for_office_id = $3)
  AND ($4::timestamptz IS NULL OR occurred_at >= $4)
  AND ($5::timestamptz IS NULL OR occurred_at < $5)
  AND ($6::timestamptz IS NULL OR (occurred_at, event_id) > ($6, $7::bigint))
ORDER BY occurred_at, event_id LIMIT $8
"""
# Per unit its last event at or before $3 (the unit as it was then), counted like a
# live snapshot (`units.COUNTS`).
COUNTS_AS_OF = """
SELECT e.office_id, u.currency, u.license_type, e.state, e.held_from, count(*) AS n
FROM (
    SELECT DISTINCT ON (unit_id) unit_id, office_id, state, held_from
    FROM pool.unit_events
    WHERE company_id = $1 AND occurred_at <= $3
    ORDER BY unit_id, event_id DESC
) e
JOIN pool.units u ON u.company_id = $1 AND u.unit_id = e.unit_id
WHERE e.state <> 'TERMINATED' AND ($2::text IS NULL OR u.currency = $2)
GROUP BY e.office_id, u.currency, u.license_type, e.state, e.held_from
ORDER BY u.currency, e.office_id, u.license_type
"""
HORIZON = "SELECT starts_at FROM pool.history_horizons WHERE company_id = $1"
# Events before $1 go, except each unit's last one before $1 (its state at $1) while the
# unit is live; at most $2 per call. Company by company (the companies of the offices),
# each read on the primary key from its oldest event.
PURGE = """
WITH old AS (
    SELECT e.company_id, e.occurred_at, e.event_id
    FROM (SELECT DISTINCT company_id FROM pool.offices) c
    CROSS JOIN LATERAL (
        SELECT e.company_id, e.occurred_at, e.event_id FROM pool.unit_events e
        WHERE e.company_id = c.company_id AND e.occurred_at < $1
          AND (e.state = 'TERMINATED' OR EXISTS (
              SELECT 1 FROM pool.unit_events later
              WHERE later.company_id = e.company_id AND later.unit_id = e.unit_id
                AND later.event_id > e.event_id AND later.occurred_at < $1))
        LIMIT $2
    ) e
    LIMIT $2
)
DELETE FROM pool.unit_events e USING old
WHERE e.company_id = old.company_id AND e.occurred_at = old.occurred_at
  AND e.event_id = old.event_id
"""


def to_event(row: asyncpg.Record) -> UnitEvent:
    kind = row["assignee_kind"]
    return UnitEvent(
        event_id=row["event_id"],
        company_id=row["company_id"],
        unit_id=row["unit_id"],
        occurred_at=row["occurred_at"],
        kind=EventKind(row["kind"]),
        state=UnitState(row["state"]),
        office_id=row["office_id"],
        held_from=UnitState(row["held_from"]) if row["held_from"] else None,
        for_office_id=row["for_office_id"],
        source=Source(row["source"]) if row["source"] else None,
        assignee=Assignee(kind, row["assignee_id"] or "") if kind else None,
        claimable_at=row["claimable_at"],
        hold_id=row["hold_id"],
        receipt_id=row["receipt_id"],
        request_id=row["request_id"],
        origin=row["origin"],
    )


class History:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def page(self, query: EventQuery) -> list[UnitEvent]:
        """Up to `page_size + 1` events of the query, by instant then id."""
        rows = await self._conn.fetch(
            LIST,
            query.company_id,
            query.unit_id,
            query.office_id,
            query.start,
            query.end,
            query.after[0] if query.after else None,
            query.after[1] if query.after else None,
            query.page_size + 1,
        )
        return [to_event(r) for r in rows]

    async def counts_as_of(
        self, company_id: uuid.UUID, currency: str | None, as_of: datetime
    ) -> list[UnitCount]:
        """Live units as of `as_of`, by office, type, state and held-from state."""
        rows = await self._conn.fetch(COUNTS_AS_OF, company_id, currency, as_of)
        return [to_unit_count(r) for r in rows]

    async def horizon(self, company_id: uuid.UUID) -> datetime | None:
        """When the company's history started, if it had units before history existed."""
        value: datetime | None = await self._conn.fetchval(HORIZON, company_id)
        return value

    async def purge(self, before: datetime, limit: int) -> int:
        """Drops up to `limit` events that no as-of snapshot from `before` on needs."""
        status: str = await self._conn.execute(PURGE, before, limit)
        return int(status.rsplit(" ", 1)[1])
