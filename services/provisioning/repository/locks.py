"""Session locks: one runner per import across every replica (PostgreSQL advisory locks,
held on one connection for as long as the runner works)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"


@asynccontextmanager
async def exclusive(db: asyncpg.Pool, name: str) -> AsyncIterator[bool]:
    """Whether this process got the lock `name`; it is held until the block ends."""
    async with db.acquire() as conn:
        got: bool = await conn.fetchval(TRY_LOCK, name)
        try:
            yield got
        finally:
            if got:
                await conn.execute(UNLOCK, name)
