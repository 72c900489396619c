"""After every load against a service: do the ids it returned agree with its database?

The generator writes an id from every successful response (a unit id, a usage id) to a
file. The check then requires:

1. no id appears twice across all responses on that database (nothing issued twice);
2. the responses hold `per_call` ids per successful call;
3. the database side, which the scenario supplies (`DatabaseCheck`): for example every
   returned unit is ASSIGNED and no other unit is. A call that failed ambiguously
   (deadline exceeded, connection lost) may have done work nobody saw, so counts in the
   database may exceed the ids by at most those calls' `per_call`.

A failed check fails the scenario, and the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness.results import CheckResult


@dataclass(frozen=True)
class IssuedIds:
    """What one load run against a service reported."""

    ids_file: Path  # one id per line, from every successful response
    ok_calls: int  # successful calls, warm-up and drain included
    per_call: int  # ids per successful call
    ambiguous_calls: int  # failed calls whose effect is unknown


@dataclass
class IssueLedger:
    """Every run against one service database; the checks look at all of them."""

    runs: list[IssuedIds] = field(default_factory=list)

    def add(self, run: IssuedIds) -> None:
        self.runs.append(run)

    def read_ids(self) -> list[str]:
        ids: list[str] = []
        for run in self.runs:
            if run.ids_file.exists():
                ids.extend(line for line in run.ids_file.read_text().splitlines() if line)
        return ids

    @property
    def expected_ids(self) -> int:
        return sum(run.ok_calls * run.per_call for run in self.runs)

    @property
    def ambiguous_ids(self) -> int:
        """How many more the database may hold than the responses: ambiguous failures."""
        return sum(run.ambiguous_calls * run.per_call for run in self.runs)


# (database URL, ledger, the returned ids) -> (facts, problems)
DatabaseCheck = Callable[[str, IssueLedger, Sequence[str]], tuple[dict[str, Any], list[str]]]


async def copy_returned(connection: asyncpg.Connection, ids: Sequence[str]) -> None:
    """Loads the distinct returned ids into the temporary table `returned(id uuid)`, which
    is dropped at commit: call it inside a transaction and join against it."""
    await connection.execute("CREATE TEMPORARY TABLE returned (id uuid) ON COMMIT DROP")
    await connection.copy_records_to_table(
        "returned", records=((issued,) for issued in set(ids)), columns=["id"]
    )


def count_mismatch(
    what: str, in_database: int, returned: int, ledger: IssueLedger, table: str
) -> list[str]:
    """`in_database` must equal the distinct ids returned, plus at most the ambiguous."""
    if in_database < returned:
        return [f"{in_database} {what} in {table} but {returned} returned"]
    if in_database > returned + ledger.ambiguous_ids:
        return [
            f"{in_database} {what} in {table} but {returned} returned "
            f"(+{ledger.ambiguous_ids} possible from ambiguous failures)"
        ]
    return []


def check_issued(
    name: str, database_url: str, ledger: IssueLedger, check_database: DatabaseCheck
) -> CheckResult:
    """Runs the response-side checks and the database side over the whole ledger."""
    ids = ledger.read_ids()
    counts = Counter(ids)
    duplicates = [issued for issued, n in counts.items() if n > 1]
    problems: list[str] = []
    if duplicates:
        problems.append(f"{len(duplicates)} ids handed out twice, e.g. {duplicates[:3]}")
    if len(ids) != ledger.expected_ids:
        problems.append(
            f"responses hold {len(ids)} ids; successful calls x ids per call = "
            f"{ledger.expected_ids}"
        )
    facts: dict[str, Any] = {
        "returned_ids": len(ids),
        "distinct_ids": len(counts),
        "expected_ids": ledger.expected_ids,
        "ambiguous_ids": ledger.ambiguous_ids,
    }
    try:
        database_facts, database_problems = check_database(database_url, ledger, ids)
    except (OSError, asyncpg.PostgresError) as error:
        database_facts, database_problems = {}, [f"database check failed: {error}"]
    facts.update(database_facts)
    problems.extend(database_problems)
    return CheckResult(name, passed=not problems, facts=facts, problems=tuple(problems))
