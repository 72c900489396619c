"""The SQL of an allocation batch (Acquire, Reserve), on the batch's connection.

A batch serves one or more (company, currency) keys. Its transaction starts with their
locks (`unit_of_work.PostgresPoolUnitOfWork.locked`, one round trip with BEGIN); then,
whatever the number of keys and groups of requests (same office and type): `open` (the
instant, the pools and offices, the stored responses of its request ids: one read),
`candidates` of every group, `hand_out` of everything handed out, `bystanders` only for
a group that falls short, and `store` (the batch's holds, receipts, responses and the
events it published: one statement). Only one transaction can delete a free-list row,
so a unit is never handed out twice, even across replicas. Where its time goes is in
docs/performance.md ("Where PostgreSQL's time goes in a batch").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.common.clock import Clock
from libs.common.currency import SUPPORTED_CURRENCIES
from libs.common.errors import InvalidArgument
from libs.common.idempotency import IdempotencyKey, IdempotencyStore
from libs.common.outbox import PostgresOutbox, flush_ctes
from services.pool.domain.allocation import ALLOCATION_ORDER, ALLOCATION_RULES, Bystanders, Grace
from services.pool.domain.history import EventKind
from services.pool.domain.model import Assignee, Hold, Office, Pool, Receipt, Source, Unit
from services.pool.repository import free_list
from services.pool.repository.history import recorded
from services.pool.repository.rows import (
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


Key = tuple[uuid.UUID, str]  # (company, currency)


@dataclass(frozen=True, slots=True)
class Opened:
    """What a batch reads once its keys are locked: its instant, the pool of each key,
    the named offices of those companies, and the stored answers of its request ids."""

    now: datetime
    pools: dict[Key, Pool]
    offices: dict[uuid.UUID, Office]
    stored: dict[tuple[uuid.UUID, str], bytes | InvalidArgument]


REQUESTS = IdempotencyStore("pool")  # the pool's request ids (`unit_of_work.SCHEMA`)


def _open(requests: IdempotencyStore) -> str:
    """One read, after the locks (a statement of its own: its snapshot must be taken once
    they are granted, to see what the previous holder committed). Per key its pool; the
    named offices of the keys' companies; the request ids already stored. Rows say which
    they are (`part`); each carries the instant, the clock's ($6), else the database's,
    read now that the locks are held (the instants of one key follow its writers' order).
    """
    return f"""
WITH instant AS (SELECT coalesce($6::timestamptz, clock_timestamp()) AS now)
SELECT i.now, x.* FROM instant i CROSS JOIN (
    SELECT 'pool' AS part, k.company_id, k.currency, p.enabled_at, NULL::uuid AS office_id,
        NULL::text AS plan_kind, NULL::boolean AS is_primary, NULL::text AS display_name,
        NULL::timestamptz AS created_at, NULL::text AS request_id,
        NULL::bytea AS fingerprint, NULL::bytea AS response
    FROM unnest($1::uuid[], $2::char(3)[]) AS k(company_id, currency)
    LEFT JOIN pool.pools p ON p.company_id = k.company_id AND p.currency = k.currency
    UNION ALL
    SELECT 'office', o.company_id, o.currency, NULL, o.office_id, o.plan_kind, o.is_primary,
        o.display_name, o.created_at, NULL, NULL, NULL
    FROM pool.offices o WHERE o.company_id = ANY($1::uuid[]) AND o.office_id = ANY($3::uuid[])
    UNION ALL
    SELECT 'request', s.company_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.request_id,
        s.fingerprint, s.response
    FROM ({requests.stored_sql("$4", "$5")}) s
) x
"""


OPEN = _open(REQUESTS)

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


def _store(requests: IdempotencyStore) -> str:
    """The writes of one allocation batch, in one statement: its holds ($2..$10) and
    receipts ($11..$20), made at $1, the responses of its requests ($21..$24,
    `IdempotencyStore.record_sql`) and the events it published ($25..$31,
    `outbox.flush_ctes`). The events come last: their condition reads the other parts,
    which makes those run first and the outbox's head lock the transaction's last."""
    written = "(SELECT count(*) FROM holds) + (SELECT count(*) FROM receipts)"
    return f"""
WITH holds AS (
    INSERT INTO pool.holds (hold_id, company_id, office_id, currency, license_type, state,
        quantity, expires_at, receipt_id, created_at, unit_ids)
    SELECT h.id, h.company, h.office, h.currency, h.type, 'PENDING', h.quantity, h.expires,
        h.receipt, $1, h.units::uuid[]
    FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::int[],
                $8::timestamptz[], $9::uuid[], $10::text[])
        AS h(id, company, office, currency, type, quantity, expires, receipt, units)
    RETURNING 1
), receipts AS (
    INSERT INTO pool.receipts (receipt_id, company_id, office_id, currency, license_type,
        requested, taken, shortfall, passed_over, hold_id, created_at)
    SELECT r.id, r.company, r.office, r.currency, r.type, r.requested, r.taken::jsonb,
        r.shortfall, r.passed::jsonb, r.hold, $1
    FROM unnest($11::uuid[], $12::uuid[], $13::uuid[], $14::text[], $15::text[], $16::int[],
                $17::text[], $18::int[], $19::text[], $20::uuid[])
        AS r(id, company, office, currency, type, requested, taken, shortfall, passed, hold)
    RETURNING 1
), responses AS ({requests.record_sql("$21", "$22", "$23", "$24")}),
{flush_ctes("pool", 25, f"{written} + (SELECT count(*) FROM responses) >= 0")}
SELECT count(*) AS recorded FROM responses
"""


STORE = _store(REQUESTS)


class Allocations:
    """The statements of an allocation batch, on its connection; `store` also writes
    the responses (`requests`) and the events published in the transaction (`events`)."""

    def __init__(self, conn: asyncpg.Connection, clock: Clock, events: PostgresOutbox) -> None:
        self._conn = conn
        self._clock = clock
        self._events = events

    async def open(
        self,
        keys: Sequence[Key],
        office_ids: Sequence[uuid.UUID],
        requests: Sequence[IdempotencyKey],
    ) -> Opened:
        """The batch's instant, the pool of each (company, currency), the named offices
        of those companies and the stored answers of `requests`, in one read, once the
        keys are locked."""
        rows = await self._conn.fetch(
            OPEN,
            [company_id for company_id, _ in keys],
            [currency for _, currency in keys],
            list(office_ids),
            [k.company_id for k in requests],
            [k.request_id for k in requests],
            self._clock.sql_now(),
        )
        parts: dict[str, list[asyncpg.Record]] = {"pool": [], "office": [], "request": []}
        for r in rows:
            parts[r["part"]].append(r)
        return Opened(
            now=rows[0]["now"],
            pools={
                (r["company_id"], r["currency"]): Pool(
                    r["company_id"], r["currency"], r["enabled_at"]
                )
                for r in parts["pool"]
            },
            offices={r["office_id"]: to_office(r) for r in parts["office"]},
            stored=REQUESTS.answers(requests, parts["request"]),
        )

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

    async def store(
        self,
        now: datetime,
        holds: Sequence[Hold],
        receipts: Sequence[Receipt],
        responses: Sequence[tuple[IdempotencyKey, bytes]],
    ) -> None:
        """Stores the holds and receipts of one allocation batch (all made at `now`), the
        responses of its requests and the events published so far, in one statement.
        A request id stored meanwhile raises ABORTED (`IdempotencyStore.check_recorded`)."""
        events = self._events.take_pending()
        if not holds and not receipts and not responses and not events:
            return
        recorded = await self._conn.fetchval(
            STORE,
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
            *REQUESTS.record_arrays(responses),
            *(events or [[]] * 7),
        )
        REQUESTS.check_recorded(responses, recorded)
