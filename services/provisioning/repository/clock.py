"""The instant of a transaction: the injected clock's, else the database's."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from libs.common.clock import Clock


class TxClock:
    def __init__(self, conn: asyncpg.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    async def now(self) -> datetime:
        value: datetime = await self._conn.fetchval(
            "SELECT coalesce($1::timestamptz, now())", self._clock.sql_now()
        )
        return value
