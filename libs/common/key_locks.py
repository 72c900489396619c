"""The (company, currency) locks that serialize a service's writers, across replicas.

Transaction-level advisory locks (released at commit or rollback), on a hash of
"<service>/<company>/<currency>". A transaction that holds several takes them in one
statement, in one order (company, then currency), as every writer holding several does,
so writers cannot deadlock on them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

# One lock per key, in the order of the arrays; shared by the two statements below.
_TAKE = "count(pg_advisory_xact_lock(hashtextextended({service} || '/' || c || '/' || cur, 0)))"
# Also the transaction's instant: the clock's ($4), else the database's, read once the
# locks are granted, so the instants of one key follow the order its writers ran in (the
# pool's unit history relies on it).
LOCK = f"""
SELECT coalesce($4::timestamptz, clock_timestamp())
FROM (SELECT {_TAKE.format(service="$1::text")}
      FROM unnest($2::text[], $3::text[]) AS k(c, cur)) taken
"""
_NAME = re.compile(r"[a-z_]+")
_CURRENCY = re.compile(r"[A-Z]{3}")

Key = tuple[uuid.UUID, str]  # (company, currency)


async def lock_keys(
    conn: asyncpg.Connection, service: str, keys: Sequence[Key], sql_now: datetime | None
) -> datetime:
    """Holds the locks of `keys` until the transaction ends; returns its instant."""
    ordered = _ordered(keys)
    now: datetime = await conn.fetchval(
        LOCK, service, [c for c, _ in ordered], [cur for _, cur in ordered], sql_now
    )
    return now


def _ordered(keys: Sequence[Key]) -> list[tuple[str, str]]:
    return sorted({(str(company_id), currency) for company_id, currency in keys})


def lock_statement(service: str, keys: Sequence[Key]) -> str:
    """The same locks as `lock_keys`, in the same order, as one parameterless statement
    (values written in, checked first): it can follow BEGIN in one simple query, which
    saves a round trip. It returns no instant: the next statement reads the clock."""
    ordered = _ordered(keys)
    for company, currency in ordered:
        if str(uuid.UUID(company)) != company or not _CURRENCY.fullmatch(currency):
            raise ValueError(f"not a lock key: {company}/{currency}")
    if not _NAME.fullmatch(service):
        raise ValueError(f"not a service name: {service}")
    companies = ",".join(c for c, _ in ordered)
    currencies = ",".join(cur for _, cur in ordered)
    take = _TAKE.format(service=f"'{service}'::text")
    return (
        f"SELECT {take} "
        f"FROM unnest('{{{companies}}}'::text[], '{{{currencies}}}'::text[]) AS k(c, cur)"
    )
