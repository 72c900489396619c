"""Baselines `naive` and `batched`: the textbook allocation straight on PostgreSQL.

`naive` takes one unit per transaction with 64 clients: what a commit-per-request
service could reach on one hot pool. `batched` takes 100 units per transaction: how far
the database could go if the service batched. Both run as a pgbench custom script (or,
without pgbench, the same transaction from asyncpg clients) in a scratch database that
is dropped afterwards.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.context import CONCURRENCY, BenchContext, Timing
from bench.cpu import CpuMeter, CpuReport
from bench.database import execute, fetchval, scratch_database
from bench.naive_sql import COUNT_TAKEN, SCHEMA, pgbench_script, seed_sql
from bench.pgbench import find_pgbench, run_pgbench
from bench.processes import REPO_ROOT, python_module
from bench.registry import scenario
from bench.results import CheckResult, Outcome, Row

BATCH = 100
BATCHED_CLIENTS = 4  # the pool lock serializes them; more clients only queue
# Seeding: units for the fastest rate we expect, so that the pool never runs dry.
NAIVE_MAX_UNITS_PER_S = 8_000
BATCHED_MAX_UNITS_PER_S = 150_000


@dataclass(frozen=True)
class AllocationRun:
    """Transactions done in one timed run."""

    transactions: int
    failed: int
    tps: float
    latency_avg_ms: float | None
    cpu: CpuReport
    tool: str


def _run_pgbench(url: str, script: Path, clients: int, duration_s: float) -> AllocationRun:
    pgbench = find_pgbench()
    assert pgbench is not None
    result = run_pgbench(pgbench, url, script, clients=clients, duration_s=duration_s)
    return AllocationRun(
        result.transactions, result.failed, result.tps, result.latency_avg_ms, result.cpu, "pgbench"
    )


def _run_asyncpg(url: str, batch: int, clients: int, duration_s: float) -> AllocationRun:
    argv = python_module(
        "bench.naive_client",
        url,
        "--clients",
        str(clients),
        "--duration",
        str(duration_s),
        "--batch",
        str(batch),
    )
    meter = CpuMeter(server_pid=None)
    completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    cpu = meter.stop()
    data = json.loads(completed.stdout)
    return AllocationRun(
        int(data["transactions"]), int(data["failed"]), float(data["tps"]), None, cpu, "asyncpg"
    )


def _timed_run(
    ctx: BenchContext, url: str, batch: int, clients: int, duration_s: float
) -> AllocationRun:
    if find_pgbench() is None:
        return _run_asyncpg(url, batch, clients, duration_s)
    script = ctx.path(f"allocate-{batch}.sql")
    script.write_text(pgbench_script(batch))
    return _run_pgbench(url, script, clients, duration_s)


def measure_allocation(
    ctx: BenchContext, name: str, batch: int, clients: int, timing: Timing, max_units_per_s: int
) -> tuple[AllocationRun, CheckResult]:
    """Seeds a scratch pool, warms up, measures; checks that every unit taken counts."""
    units = math.ceil(max_units_per_s * (timing.total_s + 2) / 10_000) * 10_000
    with scratch_database(ctx.admin_url, name) as url:
        execute(url, *SCHEMA, seed_sql(units), "VACUUM ANALYZE bench_unit", "ANALYZE bench_pool")
        warm = _timed_run(ctx, url, batch, clients, timing.warmup_s)
        run = _timed_run(ctx, url, batch, clients, timing.duration_s)
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
    if warm.failed or run.failed:
        problems.append(f"{warm.failed + run.failed} failed transactions")
    check = CheckResult(
        f"{name}: units taken match transactions x {batch}",
        passed=not problems,
        facts={"seeded": units, "taken": taken, "expected": expected, "tool": run.tool},
        problems=tuple(problems),
    )
    return run, check


def _row(name: str, run: AllocationRun, batch: int, clients: int, timing: Timing) -> Row:
    units_per_s = run.tps * batch
    notes = [f"{run.tool}, {clients} connections"]
    if batch > 1:
        notes.append(f"{run.tps:,.0f} transactions/s of {batch} units")
    if run.latency_avg_ms is not None:
        notes.append(f"mean latency {run.latency_avg_ms:.2f} ms")
    return Row(
        scenario=name,
        throughput=units_per_s if batch > 1 else run.tps,
        unit="units/s" if batch > 1 else "tps",
        concurrency=clients,
        duration_s=timing.duration_s,
        generator_cpu_share=run.cpu.generator_share,
        notes=tuple(notes),
        details={
            "transactions_per_s": run.tps,
            "units_per_s": units_per_s,
            "units_per_transaction": batch,
            "transactions": run.transactions,
            "latency_avg_ms": run.latency_avg_ms,
            "tool": run.tool,
            "cpu": run.cpu.to_json(),
        },
    )


@scenario("naive", "one unit per transaction, pool row locked FOR UPDATE, 64 clients")
def naive(ctx: BenchContext) -> Outcome:
    timing = ctx.timing(full=12, quick=5)
    run, check = measure_allocation(ctx, "naive", 1, CONCURRENCY, timing, NAIVE_MAX_UNITS_PER_S)
    row = _row("naive", run, 1, CONCURRENCY, timing)
    return Outcome("naive", "naive", "ok" if check.passed else "failed", [row], [check])


@scenario("batched", "the same allocation, 100 units per transaction (database limit)")
def batched(ctx: BenchContext) -> Outcome:
    timing = ctx.timing(full=12, quick=5)
    run, check = measure_allocation(
        ctx, "batched", BATCH, BATCHED_CLIENTS, timing, BATCHED_MAX_UNITS_PER_S
    )
    row = _row("batched", run, BATCH, BATCHED_CLIENTS, timing)
    return Outcome("batched", "batched", "ok" if check.passed else "failed", [row], [check])
