"""Baselines `naive` and `batched`: the textbook allocation straight on PostgreSQL.

`naive` takes one unit per transaction with 64 clients: what a commit-per-request
service could reach on one hot pool. `batched` takes 100 units per transaction: how far
the database could go if the service batched. Both run as a pgbench custom script (or,
without pgbench, the same transaction from asyncpg clients) in a scratch database that
is dropped afterwards (bench/baselines/transactions.py).
"""

from __future__ import annotations

import math

from bench.baselines.allocation_sql import (
    COUNT_TAKEN,
    LOCK_POOL_SQL,
    SCHEMA,
    seed_sql,
    take_units_sql,
)
from bench.baselines.transactions import (
    Transaction,
    TransactionRun,
    failed_transactions,
    transaction_row,
    warm_and_measure,
)
from bench.harness.context import CONCURRENCY, BenchContext, Timing
from bench.harness.database import execute, fetchval, scratch_database
from bench.harness.registry import scenario
from bench.harness.results import CheckResult, Outcome, Row, finished

BATCH = 100
BATCHED_CLIENTS = 4  # the pool lock serializes them; more clients only queue
# Seeding: units for the fastest rate we expect, so that the pool never runs dry.
NAIVE_MAX_UNITS_PER_S = 8_000
BATCHED_MAX_UNITS_PER_S = 150_000


def allocation(batch: int) -> Transaction:
    """Lock the pool row, take `batch` free units, commit."""
    return Transaction(f"allocate-{batch}", (LOCK_POOL_SQL, take_units_sql(batch)))


def measure_allocation(
    ctx: BenchContext, name: str, batch: int, clients: int, timing: Timing, max_units_per_s: int
) -> tuple[TransactionRun, CheckResult]:
    """Seeds a scratch pool, warms up, measures; checks that every unit taken counts."""
    units = math.ceil(max_units_per_s * (timing.total_s + 2) / 10_000) * 10_000
    with scratch_database(ctx.admin_url, name) as url:
        execute(url, *SCHEMA, seed_sql(units), "VACUUM ANALYZE bench_unit", "ANALYZE bench_pool")
        warm, run = warm_and_measure(ctx, url, allocation(batch), clients, timing)
        taken = int(fetchval(url, COUNT_TAKEN))
    expected = (warm.transactions + run.transactions) * batch
    # A transaction cut off by pgbench's timer may commit without being counted.
    slack = 2 * clients * batch
    problems: list[str] = []
    if taken < expected:
        problems.append(
            f"only {taken} units taken for {expected} expected: the pool ran dry "
            f"(seeded {units}); raise the expected maximum rate"
        )
    elif taken > expected + slack:
        problems.append(f"{taken} units taken but transactions account for {expected}")
    problems.extend(failed_transactions(warm, run))
    check = CheckResult(
        f"{name}: units taken match transactions x {batch}",
        passed=not problems,
        facts={"seeded": units, "taken": taken, "expected": expected, "tool": run.tool},
        problems=tuple(problems),
    )
    return run, check


def _row(name: str, run: TransactionRun, batch: int, clients: int, timing: Timing) -> Row:
    units_per_s = run.tps * batch
    return transaction_row(
        name,
        run,
        clients,
        timing,
        throughput=units_per_s if batch > 1 else run.tps,
        unit="units/s" if batch > 1 else "tps",
        notes=(f"{run.tps:,.0f} transactions/s of {batch} units",) if batch > 1 else (),
        units_per_s=units_per_s,
        units_per_transaction=batch,
    )


@scenario("naive", "one unit per transaction, pool row locked FOR UPDATE, 64 clients")
def naive(ctx: BenchContext) -> Outcome:
    timing = ctx.timing(full=12, quick=5)
    run, check = measure_allocation(ctx, "naive", 1, CONCURRENCY, timing, NAIVE_MAX_UNITS_PER_S)
    row = _row("naive", run, 1, CONCURRENCY, timing)
    return finished("naive", "naive", [row], [check])


@scenario("batched", "the same allocation, 100 units per transaction (database limit)")
def batched(ctx: BenchContext) -> Outcome:
    timing = ctx.timing(full=12, quick=5)
    run, check = measure_allocation(
        ctx, "batched", BATCH, BATCHED_CLIENTS, timing, BATCHED_MAX_UNITS_PER_S
    )
    row = _row("batched", run, BATCH, BATCHED_CLIENTS, timing)
    return finished("batched", "batched", [row], [check])
