"""The (company, currency) lock every writer of the pool takes, and the instant of a
transaction (the clock's: the database's, or a test's)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from libs.common.clock import Clock
from libs.common.idempotency import IdempotencyStore
from libs.common.key_locks import lock_keys

log = logging.getLogger(__name__)

NOW = "SELECT coalesce($1::timestamptz, now())"
# A live snapshot waits for the writers of its (company, currency) pools and keeps new
# ones out until its transaction ends: the shared side of their locks, transaction-level
# (PgBouncer's transaction pooling keeps them on the snapshot's one server connection, and
# its commit lets them go). Its instant is read once it holds them all. One statement for
# all the currencies, in the order given (the writers' order).
_KEYS = "hashtextextended('pool/' || $1::text || '/' || cur, 0)"
HOLD_SHARED = f"""
SELECT coalesce($3::timestamptz, clock_timestamp())
FROM (SELECT count(pg_advisory_xact_lock_shared({_KEYS})) FROM unnest($2::text[]) AS k(cur)) held
"""


class Locks:
    """Writers of one (company, currency) serialize on a transaction-level advisory lock,
    across every replica: allocation sees a consistent free-list."""

    def __init__(self, conn: asyncpg.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    async def take(self, company_id: uuid.UUID, currency: str) -> datetime:
        """Holds the lock until the transaction ends; returns the transaction's instant."""
        return await self.take_all([(company_id, currency)])

    async def take_all(self, keys: Sequence[tuple[uuid.UUID, str]]) -> datetime:
        """Holds the locks of every (company, currency) of `keys` until the transaction
        ends, taken in one order (company, then currency) so that writers holding several
        cannot deadlock; returns the transaction's instant."""
        return await lock_keys(self._conn, "pool", keys, self._clock.sql_now())

    async def now(self) -> datetime:
        """The instant for a reader."""
        value: datetime = await self._conn.fetchval(NOW, self._clock.sql_now())
        return value


class SnapshotLocks:
    """What lets a live snapshot be one instant of unit history: while it holds the
    shared side of the writers' locks, no writer of those pools is in flight, so every
    change stamped before its instant is in what its next statement reads (read
    committed: a statement sees what committed before it began) and every later one is
    not."""

    def __init__(self, conn: asyncpg.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    async def hold(self, company_id: uuid.UUID, currencies: list[str]) -> datetime:
        """Waits for the writers in flight, in the writers' order (no deadlock), and keeps
        new ones out until the transaction ends; the instant once all are held."""
        value: datetime = await self._conn.fetchval(
            HOLD_SHARED, str(company_id), sorted(currencies), self._clock.sql_now()
        )
        return value


class Housekeeping:
    """Upkeep of the schema: planner statistics, old request ids."""

    def __init__(self, conn: asyncpg.Connection, requests: IdempotencyStore) -> None:
        self._conn = conn
        self._requests = requests

    async def refresh_statistics(self) -> None:
        """Re-reads the statistics of the free-list and units after a bulk change, so the
        next picks are planned on the new sizes instead of waiting for autovacuum."""
        try:
            await self._conn.execute("ANALYZE pool.free_units, pool.units")
        except asyncpg.PostgresError:  # not the owner: autovacuum will do it later
            log.warning("could not analyze the pool tables", exc_info=True)

    async def purge_request_ids(self, retention_hours: int) -> int:
        """Drops request ids older than the retention; returns how many."""
        return await self._requests.purge(self._conn, retention_hours)
