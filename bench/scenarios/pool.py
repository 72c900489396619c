"""Pool scenarios: Acquire against a running pool service (S2-S5, S8).

Each scenario is a function `run_sN(target, setup, ctx, timing)`: `target` is a running
service (address, database, allocation ledger), `setup` seeds it through the API
(bench/scenarios/pool_seeding.py). The registered wrapper starts a service on a fresh
database, picks the setup and calls it, so a run can also be pointed at a service
started by hand. After every load the allocation check
(bench/scenarios/allocation_check.py) runs; a failed check fails the scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Unpack

from bench.baselines.echo import echo_load, echo_server
from bench.harness.batching import POOL_RECEIPTS, batching_since, database_now
from bench.harness.context import BenchContext, Timing
from bench.harness.registry import scenario
from bench.harness.results import (
    CheckResult,
    Comparison,
    Outcome,
    Row,
    at_most,
    compare,
    finished,
    skipped,
)
from bench.loadgen.result import LoadResult
from bench.loadgen.row import load_row
from bench.loadgen.spec import Distribution
from bench.scenarios.acquire_load import acquire_load, ceiling_rps, dry_notes, units_for
from bench.scenarios.pool_seeding import Setup, Workload, hot_pool, spread_pools, zipf_shares
from bench.scenarios.pool_service import (
    PoolTarget,
    ServiceOptions,
    pool_service,
    unavailable_reason,
)
from libs.common import local_pgbouncer

S3_POOLS = 64
S3_ZIPF_S = 1.0
S4_FRACTIONS = (0.25, 0.5)
S4_LATENCY_ALLOWANCE_MS = 1.5
S5_QUANTITY = 100
S5_CONCURRENCY = 16
S5_SEED_FRACTION = 0.45
S8_OVERLOAD = 2.0
S8_SEED_SECONDS = 2.0  # the pool holds this many seconds of S2's throughput
S8_DEADLINE_MS = 1000
# Failures that are a clean answer to a drained or overloaded pool.
S8_CLEAN = frozenset(
    {"FAILED_PRECONDITION NO_LICENSE_AVAILABLE", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}
)


# ------------------------------------------------------------------ S2


def s2_timing(ctx: BenchContext) -> Timing:
    return ctx.timing(full=20, quick=5)


def run_s2(target: PoolTarget, setup: Setup, ctx: BenchContext, timing: Timing) -> Outcome:
    """S2: Acquire one unit, 64 callers, all on ONE (company, currency) pool."""
    workload = setup(target.address)
    since = database_now(target.database_url)
    result, check = acquire_load(ctx, target, workload, "S2", timing)
    batches = batching_since(target.database_url, POOL_RECEIPTS, since)
    comparisons = (
        compare(result.rps, ctx.throughput("S1"), "S1 echo", at_least=0.7),
        compare(result.rps, ctx.throughput("naive"), "naive", at_least=2.5),
    )
    row = load_row(
        "S2 hot pool",
        result,
        timing,
        comparisons=comparisons,
        notes=(*dry_notes(result), batches.note()),
        seeded_units=workload.units,
        batching=batches.details(),
    )
    return finished("S2", "Acquire on one hot pool", [row], [check])


@scenario("S2", "Acquire 1 unit on ONE hot pool, 64 callers", requires=("S1", "naive"))
def s2(ctx: BenchContext) -> Outcome:
    if reason := unavailable_reason():
        return skipped("S2", "Acquire on one hot pool", reason)
    timing = s2_timing(ctx)
    with pool_service(ctx, "s2") as target:
        return run_s2(target, hot_pool(units_for(ceiling_rps(ctx), timing)), ctx, timing)


def s2_again(
    ctx: BenchContext, run_id: str, label: str, **service: Unpack[ServiceOptions]
) -> tuple[Row, CheckResult, LoadResult]:
    """One more S2 load against a pool started with `service` (pool_service's options):
    its row (no target), its check and its result."""
    timing = s2_timing(ctx)
    with pool_service(ctx, run_id.lower().replace("-", "_"), **service) as target:
        workload = hot_pool(units_for(ceiling_rps(ctx), timing))(target.address)
        result, check = acquire_load(ctx, target, workload, run_id, timing)
    notes = dry_notes(result)
    if service.get("pgbouncer"):
        notes = (f"PgBouncer {local_pgbouncer.version()}", *notes)
    return load_row(label, result, timing, notes=notes, seeded_units=workload.units), check, result


def run_s2_variant(
    ctx: BenchContext, scenario_id: str, title: str, label: str, **service: Unpack[ServiceOptions]
) -> Outcome:
    """S2 against a pool started with `service`, beside S2 plaintext and direct in the
    same run: their ratio is what the variant costs."""
    if reason := unavailable_reason() or (
        local_pgbouncer.unavailable_reason() if service.get("pgbouncer") else None
    ):
        return skipped(scenario_id, title, reason)
    row, check, result = s2_again(ctx, scenario_id, label, **service)
    target = S2_VARIANTS[scenario_id]
    compared = compare(result.rps, ctx.throughput("S2"), "S2", at_least=target)
    return finished(scenario_id, title, [replace(row, comparisons=(compared,))], [check])


# What each S2 variant must keep of S2's throughput (a second worker must add to it).
S2_VARIANTS = {"S2-mTLS": 0.9, "S2-pgbouncer": 0.8, "S2-workers": 1.0}
# The workers variants: server processes on the pool's port (libs/common/workers.py).
WORKERS = 2
# What S2 must keep of S2 against a pool writing no unit history.
S2_HISTORY_SHARE = 0.9


@scenario("S2-mTLS", "S2 with mutual TLS on (client certificates, policy checks)", requires=("S2",))
def s2_mtls(ctx: BenchContext) -> Outcome:
    """S2 against a pool that requires client certificates and checks the caller's
    permissions on every call: the ratio is what mutual TLS costs (target >= 0.9x)."""
    title = "Acquire on one hot pool, mutual TLS"
    return run_s2_variant(ctx, "S2-mTLS", title, "S2 hot pool, mTLS", tls=True)


@scenario(
    "S2-pgbouncer",
    "S2 through PgBouncer (transaction pooling, statement cache off)",
    requires=("S2",),
)
def s2_pgbouncer(ctx: BenchContext) -> Outcome:
    """S2 with a PgBouncer in transaction pooling mode between the pool service and
    PostgreSQL: the ratio is what PgBouncer costs (target >= 0.8x), mostly the statement
    cache being off (every statement parsed on each use, a round trip more) as PgBouncer
    before 1.21 needs. PgBouncer's own CPU is in neither CPU column."""
    title = "Acquire on one hot pool, through PgBouncer"
    return run_s2_variant(ctx, "S2-pgbouncer", title, "S2 hot pool, PgBouncer", pgbouncer=True)


@scenario(
    "S2-workers", f"S2 against a pool of {WORKERS} worker processes on one port", requires=("S2",)
)
def s2_workers(ctx: BenchContext) -> Outcome:
    """S2 against a pool running two worker processes on its port, over 8 connections
    each: whether a second process per pod adds throughput (target >= 1.0x S2). Both
    workers batch the one hot key, taking its lock in turn."""
    title = f"Acquire on one hot pool, {WORKERS} workers"
    return run_s2_variant(
        ctx, "S2-workers", title, f"S2 hot pool, {WORKERS} workers", workers=WORKERS
    )


@scenario(
    "S2-nohistory",
    "S2 against a pool writing no unit history (what history costs S2)",
    requires=("S2",),
)
def s2_without_history(ctx: BenchContext) -> Outcome:
    """S2 against the same pool with its unit-history inserts taken out of the statements
    (bench/baselines/pool_without_history.py), then S2 with history once more: with
    history, S2 must keep 0.9x of the throughput without (history costs at most 10 %).
    The two S2 runs with history, one before and one after, are averaged so that a
    machine that drifts during the run does not favour either side."""
    title = "Acquire on one hot pool, no unit history"
    if reason := unavailable_reason():
        return skipped("S2-nohistory", title, reason)
    without, check, result = s2_again(ctx, "S2-nohistory", "S2 hot pool, no history", history=False)
    again, check_again, result_again = s2_again(ctx, "S2-history-again", "S2 hot pool, again")
    runs = [rps for rps in (ctx.throughput("S2"), result_again.rps) if rps]
    with_history = sum(runs) / len(runs) if runs else None
    compared = compare(with_history, result.rps, "S2 runs / this", at_least=S2_HISTORY_SHARE)
    rows = [replace(without, comparisons=(compared,)), again]
    return finished("S2-nohistory", title, rows, [check, check_again])


# ------------------------------------------------------------------ S3


def run_s3(target: PoolTarget, setup: Setup, ctx: BenchContext, timing: Timing) -> Outcome:
    """S3: Acquire spread over 64 pools, uniformly, then Zipf-skewed."""
    workload = setup(target.address)
    s2_row = ctx.row("S2")
    s2_rps = s2_row.throughput if s2_row else None
    s2_p99 = s2_row.p99_ms if s2_row else None
    rows: list[Row] = []
    checks: list[CheckResult] = []
    variants = (("uniform", Distribution()), ("skewed", Distribution("zipf", S3_ZIPF_S)))
    for name, distribution in variants:
        since = database_now(target.database_url)
        result, check = acquire_load(
            ctx, target, workload, f"S3-{name}", timing, distribution=distribution
        )
        batches = batching_since(target.database_url, POOL_RECEIPTS, since)
        comparisons = (
            compare(result.rps, s2_rps, "S2", at_least=1.0),
            at_most(
                result.latency.p99,
                1.5 * s2_p99 if s2_p99 else None,
                "S2 p99 x 1.5",
                "p99 <= 1.5x S2",
            ),
        )
        rows.append(
            load_row(
                f"S3 {S3_POOLS} pools {name}",
                result,
                timing,
                comparisons=comparisons,
                notes=(*dry_notes(result), batches.note()),
                batching=batches.details(),
            )
        )
        checks.append(check)
    return finished("S3", "Acquire over 64 pools", rows, checks)


@scenario("S3", f"Acquire spread over {S3_POOLS} pools, uniform and skewed", requires=("S2",))
def s3(ctx: BenchContext) -> Outcome:
    if reason := unavailable_reason():
        return skipped("S3", "Acquire over 64 pools", reason)
    timing = ctx.timing(full=12, quick=5)
    # Spread pools may go far faster than S2: seed each run for echo's throughput.
    per_run = units_for(ceiling_rps(ctx), timing)
    shares = zipf_shares(S3_POOLS, S3_ZIPF_S)
    units = [math.ceil(per_run * (1 / S3_POOLS + share)) + 100 for share in shares]
    with pool_service(ctx, "s3") as target:
        return run_s3(target, spread_pools(units), ctx, timing)


# ------------------------------------------------------------------ S4


def run_s4(
    target: PoolTarget, setup: Setup, ctx: BenchContext, timing: Timing, s2_rps: float
) -> Outcome:
    """S4: open loop at fractions of S2's maximum; p50 against echo at the same rate."""
    workload = setup(target.address)
    rows: list[Row] = []
    checks: list[CheckResult] = []
    with echo_server(ctx) as echo:
        for fraction in S4_FRACTIONS:
            rate = fraction * s2_rps
            label = f"S4 {fraction:.0%}"
            echo_result = echo_load(ctx, echo, timing, rate=rate)
            result, check = acquire_load(
                ctx, target, workload, f"S4-{fraction:.2f}", timing, mode="open", rate=rate
            )
            echo_p50 = echo_result.latency.p50
            limit = echo_p50 + S4_LATENCY_ALLOWANCE_MS if echo_p50 is not None else None
            comparison: Comparison = at_most(
                result.latency.p50, limit, "echo p50 + 1.5 ms", "p50 <= echo + 1.5 ms"
            )
            rows.append(load_row(f"{label} echo", echo_result, timing))
            rows.append(
                load_row(label, result, timing, comparisons=(comparison,), notes=dry_notes(result))
            )
            checks.append(check)
    return finished("S4", "open loop at 25% and 50% of S2", rows, checks)


@scenario("S4", "open loop at 25% and 50% of S2's max, p50 vs echo", requires=("S1", "S2"))
def s4(ctx: BenchContext) -> Outcome:
    title = "open loop at 25% and 50% of S2"
    if reason := unavailable_reason():
        return skipped("S4", title, reason)
    s2_rps = ctx.throughput("S2")
    if not s2_rps:
        return skipped("S4", title, "S2 produced no throughput to take fractions of")
    timing = ctx.timing(full=10, quick=5)
    units = units_for(sum(S4_FRACTIONS) * s2_rps, timing)
    with pool_service(ctx, "s4") as target:
        return run_s4(target, hot_pool(units), ctx, timing, s2_rps)


# ------------------------------------------------------------------ S5


def run_s5(target: PoolTarget, setup: Setup, ctx: BenchContext, timing: Timing) -> Outcome:
    """S5: Acquire 100 units per call on one pool; units/s against the batched limit."""
    workload = setup(target.address)
    result, check = acquire_load(
        ctx, target, workload, "S5", timing, quantity=S5_QUANTITY, concurrency=S5_CONCURRENCY
    )
    units_per_s = result.rps * S5_QUANTITY
    comparisons = (compare(units_per_s, ctx.throughput("batched"), "batched", at_least=0.3),)
    row = load_row(
        f"S5 bulk {S5_QUANTITY}/call",
        result,
        timing,
        per_call=S5_QUANTITY,
        comparisons=comparisons,
        notes=dry_notes(result),
        seeded_units=workload.units,
    )
    return finished("S5", "bulk allocation", [row], [check])


@scenario("S5", f"bulk Acquire, {S5_QUANTITY} units per call", requires=("batched",))
def s5(ctx: BenchContext) -> Outcome:
    if reason := unavailable_reason():
        return skipped("S5", "bulk allocation", reason)
    timing = ctx.timing(full=12, quick=5)
    # Seeded for 1.5x the target (0.3x the batched database limit); beyond that the
    # pool runs dry, which the row notes, and the target is met anyway.
    limit = ctx.throughput("batched") or 100_000.0
    units = units_for(S5_SEED_FRACTION * limit / S5_QUANTITY, timing) * S5_QUANTITY
    with pool_service(ctx, "s5") as target:
        return run_s5(target, hot_pool(units), ctx, timing)


# ------------------------------------------------------------------ S8


def s8_check(result: LoadResult, workload: Workload) -> CheckResult:
    """The pool drains completely, and every failure is a clean, timely answer."""
    problems: list[str] = []
    unclean = {
        key: e.count
        for key, e in result.total_errors.items()
        if key not in S8_CLEAN and key.split()[0] not in S8_CLEAN  # any shedding reason
    }
    if unclean:
        problems.append(f"failures other than a clean refusal or load shedding: {unclean}")
    handed_out = result.total_ok
    if handed_out + result.total_ambiguous < workload.units:
        problems.append(
            f"pool not drained: {handed_out} of {workload.units} units handed out "
            "while callers were refused"
        )
    slowest = max(result.latency.max or 0.0, result.error_latency.max or 0.0)
    if slowest > S8_DEADLINE_MS * 1.2:
        problems.append(f"a call took {slowest:.0f} ms, past its {S8_DEADLINE_MS} ms deadline")
    return CheckResult(
        "S8: drained, clean refusals, deadlines honoured",
        passed=not problems,
        facts={
            "seeded": workload.units,
            "handed_out": handed_out,
            "errors": {key: e.count for key, e in result.total_errors.items()},
            "slowest_ms": slowest,
        },
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class RefusalFloor:
    """What refusing calls costs a grpc.aio server that does nothing else."""

    us_per_call: float  # CPU of the server per call answered in the window
    core_share: float  # of one core, over the window


def refusal_floor(result: LoadResult) -> RefusalFloor | None:
    window = result.call_cpu
    answered = result.ok + result.failed
    if window is None or window.service_s is None or not answered or window.window_s <= 0:
        return None
    return RefusalFloor(window.service_s / answered * 1e6, window.service_s / window.window_s)


def run_s8(
    target: PoolTarget,
    setup: Setup,
    ctx: BenchContext,
    timing: Timing,
    s2_rps: float,
    scenario_id: str = "S8",
    label: str = "S8 drain + 2x overload",
) -> Outcome:
    """S8: open loop at twice S2's maximum on a pool that drains during the run; first
    (for S8 itself) the floor: a grpc.aio server refusing every call at that rate."""
    workload = setup(target.address)
    rate = S8_OVERLOAD * s2_rps
    floor = None
    if scenario_id == "S8":
        with echo_server(ctx, refuse=True) as refusing:
            floor = refusal_floor(
                echo_load(ctx, refusing, timing, rate=rate, deadline_ms=S8_DEADLINE_MS)
            )
    result, check = acquire_load(
        ctx,
        target,
        workload,
        scenario_id,
        timing,
        mode="open",
        rate=rate,
        deadline_ms=S8_DEADLINE_MS,
    )
    errors = ", ".join(f"{key}: {e.count}" for key, e in result.errors.items())
    comparisons = (
        at_most(result.error_latency.p99, S8_DEADLINE_MS, "deadline", "error p99 <= deadline"),
    )
    notes = [f"errors: {errors}"] if errors else []
    if floor is not None:
        notes.append(
            f"floor: a grpc.aio server refusing every call at this rate spends "
            f"{floor.us_per_call:,.0f} us per call, {floor.core_share:.0%} of a core"
        )
    row = load_row(
        label,
        result,
        timing,
        comparisons=comparisons,
        notes=tuple(notes),
        seeded_units=workload.units,
        refusal_floor=floor.__dict__ if floor is not None else None,
    )
    title = "drain and overload"
    return finished(scenario_id, title, [row], [check, s8_check(result, workload)])


def s8_on(ctx: BenchContext, scenario_id: str, label: str, workers: int = 1) -> Outcome:
    """S8 against a pool of `workers` processes, at twice S2's rate."""
    title = "drain and overload"
    if reason := unavailable_reason():
        return skipped(scenario_id, title, reason)
    s2_rps = ctx.throughput("S2")
    if not s2_rps:
        return skipped(scenario_id, title, "S2 produced no throughput to overload with")
    # No warm-up: the drain itself is what is measured.
    timing = Timing(warmup_s=0.0, duration_s=5.0 if ctx.quick else 10.0)
    units = math.ceil(s2_rps * S8_SEED_SECONDS)
    with pool_service(ctx, scenario_id.lower().replace("-", "_"), workers=workers) as target:
        return run_s8(target, hot_pool(units), ctx, timing, s2_rps, scenario_id, label)


@scenario("S8", "drain a pool under 2x S2's max (open loop)", requires=("S2",))
def s8(ctx: BenchContext) -> Outcome:
    return s8_on(ctx, "S8", "S8 drain + 2x overload")


@scenario(
    "S8-workers",
    f"S8 against a pool of {WORKERS} worker processes, at twice S2's (one process) rate",
    requires=("S2",),
)
def s8_workers(ctx: BenchContext) -> Outcome:
    """S8's drain and overload, the same rate, against a pool of two workers: the
    refusals and the serving shared by two processes (the floor one process cannot
    pass is on S8's row)."""
    return s8_on(ctx, "S8-workers", f"S8 drain + 2x overload, {WORKERS} workers", WORKERS)
