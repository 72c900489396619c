"""How a service batched a run, read from the rows it wrote.

Every row one batch transaction writes carries the transaction's instant (its receipts,
its usage records), so the rows written since the run began tell how many transactions
there were, how many (company, currency) keys each served and how many requests each
key had in it: the mean batch size, without asking the service. Only successful
requests leave a row.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class BatchRows:
    """Where a service's batches leave one row per request: table and instant column."""

    table: str
    instant: str


POOL_RECEIPTS = BatchRows("pool.receipts", "created_at")
CREDITS_USAGE = BatchRows("credits.usage_records", "recorded_at")


@dataclass(frozen=True)
class Batching:
    transactions: int
    key_batches: int  # (transaction, key) pairs
    requests: int

    @property
    def keys_per_transaction(self) -> float:
        return self.key_batches / self.transactions if self.transactions else 0.0

    @property
    def requests_per_key(self) -> float:
        return self.requests / self.key_batches if self.key_batches else 0.0

    def note(self) -> str:
        return (
            f"batches: {self.keys_per_transaction:.1f} keys per transaction, "
            f"{self.requests_per_key:.1f} requests per key ({self.transactions:,} transactions)"
        )

    def details(self) -> dict[str, float]:
        return {
            "transactions": self.transactions,
            "keys_per_transaction": round(self.keys_per_transaction, 2),
            "requests_per_key": round(self.requests_per_key, 2),
        }


async def _now(database_url: str) -> datetime:
    connection = await asyncpg.connect(database_url)
    try:
        instant: datetime = await connection.fetchval("SELECT clock_timestamp()")
        return instant
    finally:
        await connection.close()


def database_now(database_url: str) -> datetime:
    """The database's clock: where a run's rows begin."""
    return asyncio.run(_now(database_url))


async def _batching(database_url: str, rows: BatchRows, since: datetime) -> Batching:
    connection = await asyncpg.connect(database_url)
    try:
        found = await connection.fetchrow(
            f"""SELECT count(DISTINCT {rows.instant}) AS transactions,
                       count(DISTINCT ({rows.instant}, company_id, currency)) AS key_batches,
                       count(*) AS requests
                FROM {rows.table} WHERE {rows.instant} >= $1""",
            since,
        )
        assert found is not None
        return Batching(found["transactions"], found["key_batches"], found["requests"])
    finally:
        await connection.close()


def batching_since(database_url: str, rows: BatchRows, since: datetime) -> Batching:
    """The batches of the rows written since `since`."""
    return asyncio.run(_batching(database_url, rows, since))
