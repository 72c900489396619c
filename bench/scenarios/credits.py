"""S6: credit `RecordUsage` on ONE company pool, and spread over 50 companies.

The credits service (`python -m services.credits serve`, env `CREDITS_*`) runs on a
scratch database, set up through its API (bench/scenarios/credits_admin.py). The load is
`RecordUsage` of 1 minor unit with a fresh request_id per call, so every call is a new
usage drawn from the shared company balance: on one company every call contends for one
balance row.

Measured against S1 (echo) and `hotrow` (one-row hot update, bench/baselines/hot_row.py).
After each load: no usage id twice in the responses, one per successful call, and the
checks of bench/scenarios/usage_checks.py (records, balances, CheckLedger).
"""

from __future__ import annotations

from typing import Any

from bench.harness.batching import CREDITS_USAGE, batching_since, database_now
from bench.harness.context import BenchContext, Timing
from bench.harness.correctness import IssuedIds, IssueLedger, check_issued
from bench.harness.database import scratch_database
from bench.harness.registry import scenario
from bench.harness.results import CheckResult, Outcome, Row, compare, finished, skipped
from bench.harness.services import ServiceTarget, module_unavailable, service_process
from bench.loadgen.driver import run_load
from bench.loadgen.result import LoadResult
from bench.loadgen.row import load_row
from bench.loadgen.spec import Collect, LoadSpec, Method
from bench.scenarios.credits_admin import CURRENCY, CreditsWorkload, seed_companies
from bench.scenarios.usage_checks import check_ledgers, usage_database_check
from licensing.credits.v1 import credits_pb2

MODULE = "services.credits"
TITLE = "credit RecordUsage, one company pool and 50 companies"
RECORD_USAGE = Method(
    "licensing.credits.v1.CreditsService/RecordUsage",
    credits_pb2.RecordUsageRequest,
    credits_pb2.RecordUsageResponse,
)
USAGE_MINOR = 1
HOT_OFFICES = 8
SPREAD_COMPANIES = 50
SPREAD_OFFICES = 1


def usage_template() -> dict[str, Any]:
    return {
        "request_id": "{{uuid}}",
        "company_id": "{{choice.company_id}}",
        "office_id": "{{choice.office_id}}",
        "kind": "USAGE_KIND_CALLING",
        "amount_minor": USAGE_MINOR,
        "currency": CURRENCY,
    }


def usage_load(
    ctx: BenchContext,
    target: ServiceTarget,
    ledger: IssueLedger,
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
    result = run_load(spec, ctx.workdir, server_pid=target.pid, postgres_pid=ctx.postgres_pid)
    ledger.add(IssuedIds(ids_file, result.total_ok, 1, result.total_ambiguous))
    checks = [
        check_issued(
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
    ledger = IssueLedger()
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
        since = database_now(target.database_url)
        result, variant_checks = usage_load(ctx, target, ledger, workload, label, timing)
        batches = batching_since(target.database_url, CREDITS_USAGE, since)
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
                notes=(*_notes(result), batches.note()),
                companies=companies,
                offices_per_company=offices,
                batching=batches.details(),
            )
        )
        checks.extend(variant_checks)
    return finished("S6", TITLE, rows, checks)


@scenario(
    "S6",
    f"credit RecordUsage on ONE company pool, then over {SPREAD_COMPANIES} companies",
    requires=("S1", "hotrow"),
)
def s6(ctx: BenchContext) -> Outcome:
    if reason := module_unavailable(MODULE):
        return skipped("S6", TITLE, reason)
    timing = ctx.timing(full=12, quick=5)
    with (
        scratch_database(ctx.admin_url, "credits_s6") as database_url,
        service_process(ctx, MODULE, "CREDITS", database_url, "credits-s6") as target,
    ):
        return run_s6(ctx, target, timing)
