"""Injectable time.

Expiry and grace decisions are taken by the database clock so that every replica agrees.
SQL therefore takes the instant as `coalesce($now, now())`: the production clock passes
NULL (the database decides), a test clock passes its own instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncpg


class Clock(Protocol):
    """Where "now" comes from."""

    def sql_now(self) -> datetime | None:
        """The instant for SQL statements, or None to use the database's own clock."""


class DatabaseClock:
    """Production clock: the database's `now()`."""

    def sql_now(self) -> datetime | None:
        return None


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def sql_now(self) -> datetime | None:
        return self._now

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = instant


class TransactionClock:
    """The instant of one connection's statements: the clock's, else the database's
    `now()` (the start of the connection's transaction)."""

    def __init__(self, conn: asyncpg.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    async def now(self) -> datetime:
        value: datetime = await self._conn.fetchval(
            "SELECT coalesce($1::timestamptz, now())", self._clock.sql_now()
        )
        return value
