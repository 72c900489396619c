"""The textbook allocation, in SQL: the schema, the seed and the transaction.

One pool row; units are rows with a state. A transaction locks the pool row
(`SELECT ... FOR UPDATE`), marks `batch` free units of the pool taken (returning their
ids) and commits, so every commit waits for the WAL flush while holding the lock.
"""

from __future__ import annotations

POOL_ID = 1

SCHEMA = (
    "CREATE TABLE bench_pool (pool_id integer PRIMARY KEY)",
    """CREATE TABLE bench_unit (
        unit_id bigint PRIMARY KEY,
        pool_id integer NOT NULL REFERENCES bench_pool,
        state text NOT NULL,
        taken_at timestamptz
    )""",
    "CREATE INDEX bench_unit_free ON bench_unit (pool_id, unit_id) WHERE state = 'FREE'",
    f"INSERT INTO bench_pool VALUES ({POOL_ID})",
)


def seed_sql(units: int) -> str:
    """Inserts `units` free units into the pool."""
    return (
        f"INSERT INTO bench_unit SELECT g, {POOL_ID}, 'FREE', NULL "
        f"FROM generate_series(1, {units}) AS g"
    )


LOCK_POOL_SQL = f"SELECT pool_id FROM bench_pool WHERE pool_id = {POOL_ID} FOR UPDATE"


def take_units_sql(batch: int) -> str:
    return (
        "UPDATE bench_unit SET state = 'TAKEN', taken_at = now() "
        "WHERE unit_id IN (SELECT unit_id FROM bench_unit "
        f"WHERE pool_id = {POOL_ID} AND state = 'FREE' LIMIT {batch}) "
        "RETURNING unit_id"
    )


COUNT_TAKEN = "SELECT count(*) FROM bench_unit WHERE state = 'TAKEN'"
