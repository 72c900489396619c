"""Business time: the injectable clock's instant, or the database's `now()`.

Instants that carry business meaning (plan times, purchase times, quote expiry) come from
the clock as `coalesce($n, now())`. Leases of purchase drivers use the database's real
`now()`: they are about processes, not business time."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from libs.common.clock import Clock


class Instants:
    def __init__(self, conn: asyncpg.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    async def now(self) -> datetime:
        value: datetime = await self._conn.fetchval(
            "SELECT coalesce($1::timestamptz, now())", self._clock.sql_now()
        )
        return value
