"""The transactional outbox: domain events written in the same transaction as their effect.

A use case publishes inside its unit of work, with no I/O:
`tx.events.publish(company_id, "credits.granted", {...})`. The unit of work writes what
was published as the last statement before the commit (`PostgresOutbox.flush`, one
statement for the whole transaction), so a rolled-back transaction publishes nothing.

Order. Each company has a head row (`event_heads`); the flush bumps it and numbers the
company's events from it. The head's row lock is held until the commit, so the next
transaction of the company numbers its events only after this one committed: a
company's sequence numbers follow commit order and have no gaps (a rollback rolls the
head back too). A reader that sees event N of a company therefore sees every event
before it: resuming after N can miss nothing. (Database sequences or transaction ids
are assigned before the commit and commit in another order: a reader could pass N+1
while N is still to commit, and skip it.) The head lock is the last lock a transaction
takes, so it cannot take part in a deadlock; it is held only for the commit itself.

Retention. `purge` drops the oldest events of each company, a prefix of its sequence,
and records how far (`purged_through`): a reader resuming before that has lost events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg


def ddl(schema: str) -> str:
    """The outbox tables a service's migration creates in its schema."""
    return f"""
    CREATE TABLE {schema}.event_heads (
        company_id uuid PRIMARY KEY,
        last_seq bigint NOT NULL,
        purged_through bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE {schema}.events (
        company_id uuid NOT NULL,
        seq bigint NOT NULL,
        event_id uuid NOT NULL,
        event_type text NOT NULL,
        recorded_at timestamptz NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (company_id, seq)
    );
    """


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event: `seq` is its place in its company's stream."""

    company_id: uuid.UUID
    seq: int
    event_id: uuid.UUID
    event_type: str
    recorded_at: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EventPage:
    """What a reader found after a position: the events (up to the limit asked), how
    far the read went (`scanned_to`: every event up to it was seen or filtered out), and
    the company's stream bounds as of the same snapshot."""

    events: tuple[Event, ...]
    scanned_to: int
    last_seq: int
    purged_through: int


class Outbox(Protocol):
    """The events of one transaction (what a use case sees as `tx.events`)."""

    def publish(self, company_id: uuid.UUID, event_type: str, data: Mapping[str, Any]) -> None:
        """Adds an event; it is written with the transaction and exists only if it
        commits. `data` is JSON: strings, numbers, booleans, lists and mappings."""
        ...

    async def read(
        self, company_id: uuid.UUID, after: int, types: Sequence[str], limit: int
    ) -> EventPage:
        """The company's events after `after`, of `types` (empty: every type)."""
        ...

    async def purge(self, company_id: uuid.UUID, older_than: timedelta) -> int:
        """Drops the company's events recorded more than `older_than` ago (by the
        database's clock, which recorded them); returns how many."""
        ...

    async def companies(self) -> list[uuid.UUID]:
        """Every company that has a stream."""
        ...

    async def flush(self) -> None:
        """Writes what was published (the unit of work, last before the commit)."""
        ...


class HasEvents(Protocol):
    """A service's `Tx`, as far as its events go."""

    @property
    def events(self) -> Outbox: ...


async def flush_events(tx: HasEvents) -> None:
    """The unit of work's `before_commit` for a service with an outbox."""
    await tx.events.flush()


class PostgresOutbox:
    """`Outbox` on one connection of the service's schema; `flush` is called by the
    unit of work before the commit."""

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self._conn = conn
        self._sql = _statements(schema)
        self._pending: list[tuple[uuid.UUID, str, str]] = []

    def publish(self, company_id: uuid.UUID, event_type: str, data: Mapping[str, Any]) -> None:
        self._pending.append((company_id, event_type, json.dumps(data, separators=(",", ":"))))

    async def flush(self) -> None:
        """One statement for the transaction's events; heads locked in company order."""
        arrays = self.take_pending()
        if arrays:
            await self._conn.execute(self._sql.flush, *arrays)

    def take_pending(self) -> list[list[Any]]:
        """The parameters of `flush_ctes` for what was published (none: empty), which
        the caller then writes in its own statement; nothing is left to `flush`."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, []
        counts: dict[uuid.UUID, int] = {}
        ranks = []
        for company_id, _, _ in pending:
            counts[company_id] = counts.get(company_id, 0) + 1
            ranks.append(counts[company_id])
        companies = sorted(counts)
        return [
            companies,
            [counts[c] for c in companies],
            [p[0] for p in pending],
            ranks,
            [uuid.uuid4() for _ in pending],
            [p[1] for p in pending],
            [p[2] for p in pending],
        ]

    async def read(
        self, company_id: uuid.UUID, after: int, types: Sequence[str], limit: int
    ) -> EventPage:
        rows = await self._conn.fetch(self._sql.read, company_id, after, list(types) or None, limit)
        head = rows[0]
        last_seq, purged = head["last_seq"] or 0, head["purged_through"] or 0
        events = tuple(
            Event(
                company_id,
                row["seq"],
                row["event_id"],
                row["event_type"],
                row["recorded_at"],
                json.loads(row["data"]),
            )
            for row in rows
            if row["seq"] is not None
        )
        if len(events) == limit:  # (limit 0: only the bounds)
            scanned_to = events[-1].seq if events else after
        else:  # fewer than asked: the read went to the end of the stream, as of its snapshot
            scanned_to = max(last_seq, after)
        return EventPage(events, scanned_to, last_seq, purged)

    async def purge(self, company_id: uuid.UUID, older_than: timedelta) -> int:
        purged: int = await self._conn.fetchval(self._sql.purge, company_id, older_than)
        return purged

    async def companies(self) -> list[uuid.UUID]:
        return [row[0] for row in await self._conn.fetch(self._sql.companies)]


@dataclass(frozen=True, slots=True)
class _Statements:
    flush: str
    read: str
    purge: str
    companies: str


def flush_ctes(schema: str, first: int, after: str = "true") -> str:
    """The CTEs that write a transaction's events (`take_pending`'s seven arrays, the
    parameters from `$first` on), to be the last part of a statement; `after`, an SQL
    condition on the statement's other parts (CTEs), makes them run before the heads
    are locked, so that the head lock stays the transaction's last."""
    companies, counts, of, ranks, ids, types, data = (f"${first + i}" for i in range(7))
    heads, events = f"{schema}.event_heads", f"{schema}.events"
    # Each company once (sorted) and its count; the events, each with its rank within
    # its company in publishing order.
    return f"""
    event_counts AS (
        SELECT * FROM unnest({companies}::uuid[], {counts}::bigint[]) AS c(company_id, n)
    ), bumped_heads AS (
        INSERT INTO {heads} AS h (company_id, last_seq)
        SELECT company_id, n FROM event_counts WHERE {after} ORDER BY company_id
        ON CONFLICT (company_id) DO UPDATE SET last_seq = h.last_seq + excluded.last_seq
        RETURNING h.company_id, h.last_seq
    ), written_events AS (
        INSERT INTO {events} (company_id, seq, event_id, event_type, recorded_at, data)
        SELECT e.company_id, b.last_seq - c.n + e.rank, e.event_id, e.event_type,
               clock_timestamp(), e.data::jsonb
        FROM unnest({of}::uuid[], {ranks}::bigint[], {ids}::uuid[], {types}::text[],
                    {data}::text[])
            AS e(company_id, rank, event_id, event_type, data)
        JOIN bumped_heads b USING (company_id)
        JOIN event_counts c USING (company_id)
        RETURNING seq
    )"""


def _statements(schema: str) -> _Statements:
    return _STATEMENTS.get(schema) or _STATEMENTS.setdefault(schema, _build(schema))


_STATEMENTS: dict[str, _Statements] = {}


def _build(schema: str) -> _Statements:
    heads, events = f"{schema}.event_heads", f"{schema}.events"
    return _Statements(
        flush=f"WITH {flush_ctes(schema, 1)}\nSELECT count(*) FROM written_events",
        # One statement, one snapshot: the events and the bounds they are checked against.
        read=f"""
        SELECT h.last_seq, h.purged_through, e.*
        FROM (SELECT 1) one
        LEFT JOIN {heads} h ON h.company_id = $1
        LEFT JOIN LATERAL (
            SELECT seq, event_id, event_type, recorded_at, data::text AS data
            FROM {events}
            WHERE company_id = $1 AND seq > $2
              AND ($3::text[] IS NULL OR event_type = ANY($3::text[]))
            ORDER BY seq
            LIMIT $4
        ) e ON true
        ORDER BY e.seq
        """,
        # The events before the first one younger than $2 (a prefix of the sequence),
        # and the head that remembers where the stream now starts.
        purge=f"""
        WITH edge AS (
            SELECT coalesce(
                (SELECT seq - 1 FROM {events}
                 WHERE company_id = $1 AND recorded_at >= clock_timestamp() - $2::interval
                 ORDER BY seq LIMIT 1),
                (SELECT last_seq FROM {heads} WHERE company_id = $1)
            ) AS through
        ), gone AS (
            DELETE FROM {events} e USING edge
            WHERE e.company_id = $1 AND e.seq <= edge.through
            RETURNING e.seq
        ), moved AS (
            UPDATE {heads} h SET purged_through = edge.through FROM edge
            WHERE h.company_id = $1 AND h.purged_through < edge.through
              AND EXISTS (SELECT 1 FROM gone)
        )
        SELECT count(*) FROM gone
        """,
        companies=f"SELECT company_id FROM {heads} ORDER BY company_id",
    )
