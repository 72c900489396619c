"""After every pool load: the units handed out are exactly the units ASSIGNED.

The database side of the correctness check (bench/harness/correctness.py) for the pool:
every returned unit id is in `pool.units` and ASSIGNED, and the number of ASSIGNED units
equals the number returned (plus at most the units of ambiguous failures). The queries
read the pool service's schema (`pool.units`, `unit_id`, `state`); if it changes,
change them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from bench.harness.correctness import IssueLedger, check_issued, copy_returned, count_mismatch
from bench.harness.results import CheckResult

# Units in the ASSIGNED state, all companies (every pool scenario has its own database).
COUNT_ASSIGNED_SQL = "SELECT count(*) FROM pool.units WHERE state = 'ASSIGNED'"
# Of the ids in the temporary table `returned(id uuid)`, how many are ASSIGNED, and how
# many are unknown to the database.
RETURNED_ASSIGNED_SQL = """
    SELECT count(*) FILTER (WHERE u.state = 'ASSIGNED') AS assigned,
           count(*) FILTER (WHERE u.unit_id IS NULL) AS unknown
    FROM returned r LEFT JOIN pool.units u ON u.unit_id = r.id
"""


async def _database_facts(database_url: str, ids: Sequence[str]) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        assigned = int(await connection.fetchval(COUNT_ASSIGNED_SQL))
        async with connection.transaction():
            await copy_returned(connection, ids)
            row = await connection.fetchrow(RETURNED_ASSIGNED_SQL)
        assert row is not None
        return {
            "assigned_in_database": assigned,
            "returned_and_assigned": int(row["assigned"]),
            "returned_unknown": int(row["unknown"]),
        }
    finally:
        await connection.close()


def units_check(
    database_url: str, ledger: IssueLedger, ids: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """The returned units against pool.units."""
    facts: dict[str, Any] = asyncio.run(_database_facts(database_url, ids))
    problems: list[str] = []
    distinct = len(set(ids))
    if facts["returned_unknown"]:
        problems.append(f"{facts['returned_unknown']} returned unit ids are not in pool.units")
    if facts["returned_and_assigned"] != distinct - facts["returned_unknown"]:
        problems.append(
            f"only {facts['returned_and_assigned']} of {distinct} returned units are ASSIGNED"
        )
    problems.extend(
        count_mismatch(
            "units ASSIGNED", facts["assigned_in_database"], distinct, ledger, "pool.units"
        )
    )
    return facts, problems


def check_allocations(name: str, database_url: str, ledger: IssueLedger) -> CheckResult:
    """No unit twice, `quantity` per call, and the responses match pool.units."""
    return check_issued(name, database_url, ledger, units_check)
