"""The (company, currency) locks that serialize a service's writers, across replicas.

Transaction-level advisory locks (released at commit or rollback), on a hash of
"<service>/<company>/<currency>". A transaction that holds several takes them in one
statement, in one order (company, then currency), as every writer holding several does,
so writers cannot deadlock on them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

# Also the transaction's instant: the clock's ($4), else the database's.
LOCK = """
SELECT coalesce($4::timestamptz, now())
FROM (SELECT count(pg_advisory_xact_lock(hashtextextended($1::text || '/' || c || '/' || cur, 0)))
      FROM unnest($2::text[], $3::text[]) AS k(c, cur)) taken
"""

Key = tuple[uuid.UUID, str]  # (company, currency)


async def lock_keys(
    conn: asyncpg.Connection, service: str, keys: Sequence[Key], sql_now: datetime | None
) -> datetime:
    """Holds the locks of `keys` until the transaction ends; returns its instant."""
    ordered = sorted({(str(company_id), currency) for company_id, currency in keys})
    now: datetime = await conn.fetchval(
        LOCK, service, [c for c, _ in ordered], [cur for _, cur in ordered], sql_now
    )
    return now
