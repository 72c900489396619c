"""Runner locks: one runner per import across every replica (PostgreSQL advisory locks,
held on one connection for as long as the runner works).

The lock is a transaction's (`pg_try_advisory_xact_lock`), in a transaction that stays
open, doing nothing else, while the runner works; it ends with it, or with the connection.
A session lock would not survive a PgBouncer in transaction pooling mode, where the
session between two transactions may be another server connection: the unlock would
miss, and the lock stay behind on a pooled server connection. An open read-committed
transaction without writes holds no snapshot between statements: vacuum is not held back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))"


@asynccontextmanager
async def exclusive(db: asyncpg.Pool, name: str) -> AsyncIterator[bool]:
    """Whether this process got the lock `name`; it is held until the block ends."""
    async with db.acquire() as conn, conn.transaction():
        got: bool = await conn.fetchval(TRY_LOCK, name)
        yield got
