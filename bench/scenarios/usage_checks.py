"""After every S6 load: the usages returned are the usages recorded, and the ledgers hold.

The database side of the correctness check (bench/harness/correctness.py) for credits:

1. in `credits.usage_records` every returned usage exists, and the records equal the
   successful calls (ambiguous failures may add at most one each);
2. per company, the company pool balance (`credits.ledger_accounts`, kind COMPANY_POOL)
   equals the grant minus the usage drawn from it;

and the service's own proof: `CheckLedger` reports every company consistent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from bench.harness.correctness import DatabaseCheck, IssueLedger, copy_returned, count_mismatch
from bench.harness.results import CheckResult
from bench.scenarios.credits_admin import CURRENCY, CreditsAdmin, CreditsWorkload

COUNT_USAGE_SQL = "SELECT count(*) FROM credits.usage_records"
# Of the ids in the temporary table `returned(id uuid)`, how many are unknown.
RETURNED_UNKNOWN_SQL = """
    SELECT count(*) FROM returned r
    LEFT JOIN credits.usage_records u ON u.usage_id = r.id
    WHERE u.usage_id IS NULL
"""
# Per company: the shared pool's balance and the usage drawn from it.
POOL_BALANCES_SQL = """
    SELECT a.company_id::text AS company_id, a.balance,
           coalesce((SELECT sum(u.from_company_pool) FROM credits.usage_records u
                     WHERE u.company_id = a.company_id AND u.currency = a.currency), 0)
               AS drawn
    FROM credits.ledger_accounts a
    WHERE a.kind = 'COMPANY_POOL' AND a.currency = $1
"""


async def _database_facts(database_url: str, ids: Sequence[str]) -> dict[str, Any]:
    connection = await asyncpg.connect(database_url)
    try:
        records = int(await connection.fetchval(COUNT_USAGE_SQL))
        async with connection.transaction():
            await copy_returned(connection, ids)
            unknown = int(await connection.fetchval(RETURNED_UNKNOWN_SQL))
        pools = await connection.fetch(POOL_BALANCES_SQL, CURRENCY)
        return {
            "usage_records_in_database": records,
            "returned_unknown": unknown,
            "pools": {r["company_id"]: (int(r["balance"]), int(r["drawn"])) for r in pools},
        }
    finally:
        await connection.close()


def usage_database_check(workload: CreditsWorkload) -> DatabaseCheck:
    """The database side of the check for the companies of `workload`."""

    def check(
        database_url: str, ledger: IssueLedger, ids: Sequence[str]
    ) -> tuple[dict[str, Any], list[str]]:
        facts = asyncio.run(_database_facts(database_url, ids))
        pools: dict[str, tuple[int, int]] = facts.pop("pools")
        problems: list[str] = []
        distinct = len(set(ids))
        if facts["returned_unknown"]:
            problems.append(
                f"{facts['returned_unknown']} returned usage ids are not in credits.usage_records"
            )
        records = facts["usage_records_in_database"]
        problems.extend(
            count_mismatch("usage records", records, distinct, ledger, "credits.usage_records")
        )
        wrong = []
        for company in workload.companies:
            balance, drawn = pools.get(company, (None, 0))
            if balance is None or balance != workload.granted_minor - drawn:
                wrong.append(
                    f"{company}: balance {balance}, granted {workload.granted_minor}, drawn {drawn}"
                )
        if wrong:
            problems.append(f"company pool != grant - usage drawn: {wrong[:3]}")
        facts["drawn_from_pools"] = sum(pools.get(c, (0, 0))[1] for c in workload.companies)
        return facts, problems

    return check


def check_ledgers(address: str, label: str, companies: Sequence[str]) -> CheckResult:
    """The service's own proof: CheckLedger is consistent for every company."""
    admin = CreditsAdmin(address)
    problems: list[str] = []
    accounts = entries = 0
    try:
        for company in companies:
            answer = admin.check_ledger(company)
            accounts += answer.accounts_checked
            entries += answer.entries_checked
            if not answer.consistent:
                rules = sorted({v.rule for v in answer.violations})
                problems.append(f"{company}: {len(answer.violations)} violations {rules}")
    finally:
        admin.close()
    return CheckResult(
        f"{label}: CheckLedger consistent",
        passed=not problems,
        facts={"companies": len(companies), "accounts": accounts, "entries": entries},
        problems=tuple(problems[:10]),
    )
