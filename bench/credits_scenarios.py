"""S6: credit `RecordUsage` on ONE company pool, and spread over 50 companies.

The credits service (`python -m services.credits serve`, env `CREDITS_*`) runs on a
scratch database. Setup goes through its API: per company, credit accounts for its
offices (`PutAccount`, no allowance, overage REJECT so that nothing is recorded without
credits to pay for it), unified credit pooling on (`SetCreditPooling`), and one large
grant to the company pool (`GrantCredits`). The load is `RecordUsage` of 1 minor unit
with a fresh request_id per call, so every call is a new usage drawn from the shared
company balance: on one company every call contends for one balance row.

Measured against S1 (echo) and `hotrow` (one-row hot update, bench/hot_row.py). After
each load, the check (bench/correctness.py with a credits database side):

1. no usage id twice in the responses, one per successful call;
2. in `credits.usage_records` every returned usage exists, and the records equal the
   successful calls (ambiguous failures may add at most one each);
3. per company, the company pool balance (`credits.ledger_accounts`, kind COMPANY_POOL)
   equals the grant minus the usage drawn from it;
4. the service's own `CheckLedger` reports every company consistent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc

from bench.context import BenchContext, Timing
from bench.correctness import AllocationLedger, AllocationRun, DatabaseCheck, check_allocations
from bench.database import scratch_database
from bench.loadgen import Collect, LoadResult, LoadSpec, Method, run_load
from bench.registry import scenario
from bench.results import CheckResult, Outcome, Row, compare
from bench.rows import load_row
from bench.services import ServiceTarget, module_unavailable, service_process
from licensing.credits.v1 import credits_pb2, credits_pb2_grpc

MODULE = "services.credits"
TITLE = "credit RecordUsage, one company pool and 50 companies"
RECORD_USAGE = Method(
    "licensing.credits.v1.CreditsService/RecordUsage",
    credits_pb2.RecordUsageRequest,
    credits_pb2.RecordUsageResponse,
)
CURRENCY = "USD"
GRANT_MINOR = 1_000_000_000_000  # the most one grant may add; 1 per usage never runs dry
USAGE_MINOR = 1
HOT_OFFICES = 8
SPREAD_COMPANIES = 50
SPREAD_OFFICES = 1

# Usage records of the database, and of the returned ids loaded into the temporary
# table `returned(unit_id uuid)`, how many are unknown.
COUNT_USAGE_SQL = "SELECT count(*) FROM credits.usage_records"
RETURNED_UNKNOWN_SQL = """
    SELECT count(*) FROM returned r
    LEFT JOIN credits.usage_records u ON u.usage_id = r.unit_id
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


@dataclass(frozen=True)
class CreditsWorkload:
    """What the setup created: the callers' choices, and the grant per company."""

    choices: tuple[dict[str, str], ...]  # {"company_id", "office_id"} per choice
    companies: tuple[str, ...]
    granted_minor: int  # per company


class CreditsAdmin:
    """The few CreditsService calls the setup and the checks need (blocking client)."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = credits_pb2_grpc.CreditsServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def put_account(self, company_id: str, office_id: str, primary: bool) -> None:
        account = credits_pb2.Account(
            company_id=company_id,
            office_id=office_id,
            currency=CURRENCY,
            primary=primary,
            allowance_minor=0,
            overage_policy=credits_pb2.OVERAGE_POLICY_REJECT,
        )
        request = credits_pb2.PutAccountRequest(request_id=str(uuid.uuid4()), account=account)
        self._stub.PutAccount(request, timeout=30)

    def enable_pooling(self, company_id: str) -> None:
        request = credits_pb2.SetCreditPoolingRequest(
            request_id=str(uuid.uuid4()), company_id=company_id, currency=CURRENCY, enabled=True
        )
        self._stub.SetCreditPooling(request, timeout=30)

    def grant_pool(self, company_id: str, amount_minor: int) -> None:
        request = credits_pb2.GrantCreditsRequest(
            request_id=str(uuid.uuid4()),
            company_id=company_id,
            target=credits_pb2.GRANT_TARGET_COMPANY_POOL,
            currency=CURRENCY,
            amount_minor=amount_minor,
            note="bench S6",
        )
        self._stub.GrantCredits(request, timeout=30)

    def check_ledger(self, company_id: str) -> credits_pb2.CheckLedgerResponse:
        request = credits_pb2.CheckLedgerRequest(company_id=company_id)
        response: credits_pb2.CheckLedgerResponse = self._stub.CheckLedger(request, timeout=120)
        return response


def seed_companies(address: str, companies: int, offices: int) -> CreditsWorkload:
    """`companies` companies of `offices` pooled offices, each company pool granted."""
    admin = CreditsAdmin(address)
    choices: list[dict[str, str]] = []
    company_ids: list[str] = []
    try:
        for _ in range(companies):
            company_id = str(uuid.uuid4())
            for index in range(offices):
                office_id = str(uuid.uuid4())
                admin.put_account(company_id, office_id, primary=index == 0)
                choices.append({"company_id": company_id, "office_id": office_id})
            admin.enable_pooling(company_id)
            admin.grant_pool(company_id, GRANT_MINOR)
            company_ids.append(company_id)
    finally:
        admin.close()
    return CreditsWorkload(tuple(choices), tuple(company_ids), GRANT_MINOR)


def usage_template() -> dict[str, Any]:
    return {
        "request_id": "{{uuid}}",
        "company_id": "{{choice.company_id}}",
        "office_id": "{{choice.office_id}}",
        "kind": "USAGE_KIND_CALLING",
        "amount_minor": USAGE_MINOR,
        "currency": CURRENCY,
    }


# ------------------------------------------------------------------ checks


async def _database_facts(database_url: str, ids: Sequence[str]) -> dict[str, Any]:
    connection = await asyncpg.connect(database_url)
    try:
        records = int(await connection.fetchval(COUNT_USAGE_SQL))
        async with connection.transaction():
            await connection.execute(
                "CREATE TEMPORARY TABLE returned (unit_id uuid) ON COMMIT DROP"
            )
            await connection.copy_records_to_table(
                "returned", records=((i,) for i in set(ids)), columns=["unit_id"]
            )
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
        database_url: str, ledger: AllocationLedger, ids: Sequence[str]
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
        if records < distinct:
            problems.append(f"{records} usage records but {distinct} usages returned")
        elif records > distinct + ledger.ambiguous_units:
            problems.append(
                f"{records} usage records but {distinct} usages returned "
                f"(+{ledger.ambiguous_units} possible from ambiguous failures)"
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


# ------------------------------------------------------------------ S6


def usage_load(
    ctx: BenchContext,
    target: ServiceTarget,
    ledger: AllocationLedger,
    workload: CreditsWorkload,
    label: str,
    timing: Timing,
) -> tuple[LoadResult, list[CheckResult]]:
    """Runs RecordUsage load, then checks responses, records, balances and CheckLedger.

    `ledger` holds every earlier run on the same database: the record count covers them.
    """
    ids_file = ctx.path(f"{label}.usage-ids")
    spec = LoadSpec(
        target=target.address,
        method=RECORD_USAGE,
        template=usage_template(),
        choices=workload.choices,
        timing=timing,
        collect=Collect("usage.usage_id", ids_file),
    )
    result = run_load(spec, ctx.workdir, server_pid=target.pid)
    ledger.add(AllocationRun(ids_file, result.total_ok, 1, result.total_ambiguous))
    checks = [
        check_allocations(
            f"{label}: one usage per call, records match credits.usage_records",
            target.database_url,
            ledger,
            usage_database_check(workload),
        ),
        check_ledgers(target.address, label, workload.companies),
    ]
    return result, checks


def _notes(result: LoadResult) -> tuple[str, ...]:
    refused = result.error_count("FAILED_PRECONDITION", "INSUFFICIENT_CREDITS")
    return (f"{refused} INSUFFICIENT_CREDITS: grant more",) if refused else ()


def run_s6(ctx: BenchContext, target: ServiceTarget, timing: Timing) -> Outcome:
    echo = ctx.throughput("S1")
    hot = ctx.throughput("hotrow")
    rows: list[Row] = []
    checks: list[CheckResult] = []
    ledger = AllocationLedger([])
    variants = (
        ("1 company", 1, HOT_OFFICES, ("hotrow", 1.0), ("S1 echo", None)),
        (
            f"{SPREAD_COMPANIES} companies",
            SPREAD_COMPANIES,
            SPREAD_OFFICES,
            ("hotrow", None),
            ("S1 echo", 0.6),
        ),
    )
    for name, companies, offices, (_, hot_target), (_, echo_target) in variants:
        workload = seed_companies(target.address, companies, offices)
        label = f"S6-{companies}"
        result, variant_checks = usage_load(ctx, target, ledger, workload, label, timing)
        comparisons = (
            compare(result.rps, hot, "hotrow", at_least=hot_target),
            compare(result.rps, echo, "S1 echo", at_least=echo_target),
        )
        rows.append(
            load_row(
                f"S6 usage {name}",
                result,
                timing,
                comparisons=comparisons,
                notes=_notes(result),
                companies=companies,
                offices_per_company=offices,
            )
        )
        checks.extend(variant_checks)
    passed = all(check.passed for check in checks)
    return Outcome("S6", TITLE, "ok" if passed else "failed", rows, checks)


@scenario(
    "S6",
    f"credit RecordUsage on ONE company pool, then over {SPREAD_COMPANIES} companies",
    requires=("S1", "hotrow"),
)
def s6(ctx: BenchContext) -> Outcome:
    if reason := module_unavailable(MODULE):
        return Outcome("S6", TITLE, "skipped", message=reason)
    timing = ctx.timing(full=12, quick=5)
    with (
        scratch_database(ctx.admin_url, "credits_s6") as database_url,
        service_process(ctx, MODULE, "CREDITS", database_url, "credits-s6") as target,
    ):
        return run_s6(ctx, target, timing)
