"""After every pool scenario: do the responses agree with the database?

The generator writes the unit ids of every successful Acquire response to a file. The
check then requires:

1. no unit id appears twice across all responses (no double allocation);
2. the responses hold `quantity` ids per successful call;
3. in the database, the units ASSIGNED are exactly the units handed out: every returned
   id is ASSIGNED, and the count of ASSIGNED units equals the count of returned ids.
   A call that failed ambiguously (deadline exceeded, connection lost) may have assigned
   units nobody saw, so the count may exceed the ids by at most those calls' units.

The database side is the pool service's to keep true: the SQL below reads its schema
(`pool.units`, `unit_id`, `state`). If the schema changes, change these queries, or
replace `database_check` for a scenario.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.results import CheckResult

# Units in the ASSIGNED state, all companies (every pool scenario has its own database).
COUNT_ASSIGNED_SQL = "SELECT count(*) FROM pool.units WHERE state = 'ASSIGNED'"
# Of the ids loaded into the temporary table `returned(unit_id uuid)`, how many are
# ASSIGNED, and how many are unknown to the database.
RETURNED_ASSIGNED_SQL = """
    SELECT count(*) FILTER (WHERE u.state = 'ASSIGNED') AS assigned,
           count(*) FILTER (WHERE u.unit_id IS NULL) AS unknown
    FROM returned r LEFT JOIN pool.units u ON u.unit_id = r.unit_id
"""


@dataclass(frozen=True)
class AllocationRun:
    """What one load run against a pool service reported."""

    ids_file: Path  # one unit id per line, from every successful response
    ok_calls: int  # successful calls, warm-up and drain included
    quantity: int  # units per call
    ambiguous_calls: int  # failed calls whose effect is unknown


@dataclass
class AllocationLedger:
    """Every run against one pool service database; checks look at all of them."""

    runs: list[AllocationRun]

    def add(self, run: AllocationRun) -> None:
        self.runs.append(run)

    def read_ids(self) -> list[str]:
        ids: list[str] = []
        for run in self.runs:
            if run.ids_file.exists():
                ids.extend(line for line in run.ids_file.read_text().splitlines() if line)
        return ids

    @property
    def expected_ids(self) -> int:
        return sum(run.ok_calls * run.quantity for run in self.runs)

    @property
    def ambiguous_units(self) -> int:
        return sum(run.ambiguous_calls * run.quantity for run in self.runs)


DatabaseCheck = Callable[[str, AllocationLedger, Sequence[str]], tuple[dict[str, Any], list[str]]]


async def _database_facts(database_url: str, ids: Sequence[str]) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        assigned = int(await connection.fetchval(COUNT_ASSIGNED_SQL))
        async with connection.transaction():
            await connection.execute(
                "CREATE TEMPORARY TABLE returned (unit_id uuid) ON COMMIT DROP"
            )
            await connection.copy_records_to_table(
                "returned", records=((unit_id,) for unit_id in set(ids)), columns=["unit_id"]
            )
            row = await connection.fetchrow(RETURNED_ASSIGNED_SQL)
        assert row is not None
        return {
            "assigned_in_database": assigned,
            "returned_and_assigned": int(row["assigned"]),
            "returned_unknown": int(row["unknown"]),
        }
    finally:
        await connection.close()


def database_check(
    database_url: str, ledger: AllocationLedger, ids: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """The default database side of the check (reads pool.units)."""
    facts: dict[str, Any] = asyncio.run(_database_facts(database_url, ids))
    problems: list[str] = []
    distinct = len(set(ids))
    if facts["returned_unknown"]:
        problems.append(f"{facts['returned_unknown']} returned unit ids are not in pool.units")
    if facts["returned_and_assigned"] != distinct - facts["returned_unknown"]:
        problems.append(
            f"only {facts['returned_and_assigned']} of {distinct} returned units are ASSIGNED"
        )
    assigned = facts["assigned_in_database"]
    if assigned < distinct:
        problems.append(f"{assigned} units ASSIGNED but {distinct} handed out")
    elif assigned > distinct + ledger.ambiguous_units:
        problems.append(
            f"{assigned} units ASSIGNED but {distinct} handed out "
            f"(+{ledger.ambiguous_units} possible from ambiguous failures)"
        )
    return facts, problems


def check_allocations(
    name: str,
    database_url: str,
    ledger: AllocationLedger,
    check_database: DatabaseCheck = database_check,
) -> CheckResult:
    """Runs the response-side and the database-side checks over the whole ledger."""
    ids = ledger.read_ids()
    counts = Counter(ids)
    duplicates = [unit_id for unit_id, n in counts.items() if n > 1]
    problems: list[str] = []
    if duplicates:
        problems.append(f"{len(duplicates)} unit ids handed out twice, e.g. {duplicates[:3]}")
    if len(ids) != ledger.expected_ids:
        problems.append(
            f"responses hold {len(ids)} unit ids; successful calls x quantity = "
            f"{ledger.expected_ids}"
        )
    facts: dict[str, Any] = {
        "returned_ids": len(ids),
        "distinct_ids": len(counts),
        "expected_ids": ledger.expected_ids,
        "ambiguous_units": ledger.ambiguous_units,
    }
    try:
        database_facts, database_problems = check_database(database_url, ledger, ids)
    except (OSError, asyncpg.PostgresError) as error:
        database_facts, database_problems = {}, [f"database check failed: {error}"]
    facts.update(database_facts)
    problems.extend(database_problems)
    return CheckResult(name, passed=not problems, facts=facts, problems=tuple(problems))
