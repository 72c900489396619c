"""Baseline `hotrow`: one-row hot update, one transaction per request (for S6).

The textbook way to charge a shared balance: every usage is its own transaction,
`UPDATE balance SET amount = amount - 1 WHERE id = 1`, 64 clients. Each commit waits
for the WAL flush while holding the row lock, so the row serializes every caller: what
a commit-per-usage credits service could reach on one company pool. Run as a pgbench
custom script (or, without pgbench, the same statement from asyncpg clients:
`python -m bench.hot_row URL --clients 64 --duration 5`) in a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from dataclasses import dataclass

import asyncpg

from bench.context import CONCURRENCY, BenchContext, Timing
from bench.cpu import CpuMeter, CpuReport
from bench.database import execute, fetchval, scratch_database
from bench.pgbench import find_pgbench, run_pgbench
from bench.processes import REPO_ROOT, python_module
from bench.registry import scenario
from bench.results import CheckResult, Outcome, Row

START_AMOUNT = 10**15
SCHEMA = (
    "CREATE TABLE balance (id integer PRIMARY KEY, amount bigint NOT NULL)",
    f"INSERT INTO balance VALUES (1, {START_AMOUNT})",
)
UPDATE_SQL = "UPDATE balance SET amount = amount - 1 WHERE id = 1"
SPENT_SQL = f"SELECT {START_AMOUNT} - amount FROM balance WHERE id = 1"


@dataclass(frozen=True)
class HotRowRun:
    """Transactions done in one timed run."""

    transactions: int
    failed: int
    tps: float
    latency_avg_ms: float | None
    cpu: CpuReport
    tool: str


def _timed_run(ctx: BenchContext, url: str, clients: int, duration_s: float) -> HotRowRun:
    pgbench = find_pgbench()
    if pgbench is not None:
        script = ctx.path("hot-row.sql")
        script.write_text(f"{UPDATE_SQL};\n")
        r = run_pgbench(pgbench, url, script, clients=clients, duration_s=duration_s)
        return HotRowRun(r.transactions, r.failed, r.tps, r.latency_avg_ms, r.cpu, "pgbench")
    argv = python_module(
        "bench.hot_row", url, "--clients", str(clients), "--duration", str(duration_s)
    )
    meter = CpuMeter(server_pid=None)
    completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    cpu = meter.stop()
    data = json.loads(completed.stdout)
    return HotRowRun(
        int(data["transactions"]), int(data["failed"]), float(data["tps"]), None, cpu, "asyncpg"
    )


def measure_hot_row(
    ctx: BenchContext, clients: int, timing: Timing
) -> tuple[HotRowRun, CheckResult]:
    """Warms up, measures; checks that the row went down by one per transaction."""
    with scratch_database(ctx.admin_url, "hotrow") as url:
        execute(url, *SCHEMA)
        warm = _timed_run(ctx, url, clients, timing.warmup_s)
        run = _timed_run(ctx, url, clients, timing.duration_s)
        spent = int(fetchval(url, SPENT_SQL))
    expected = warm.transactions + run.transactions
    slack = 2 * clients  # a transaction cut off by pgbench's timer may commit uncounted
    problems: list[str] = []
    if not expected <= spent <= expected + slack:
        problems.append(f"the row went down by {spent} for {expected} transactions")
    if warm.failed or run.failed:
        problems.append(f"{warm.failed + run.failed} failed transactions")
    check = CheckResult(
        "hotrow: one decrement per transaction",
        passed=not problems,
        facts={"spent": spent, "expected": expected, "tool": run.tool},
        problems=tuple(problems),
    )
    return run, check


@scenario("hotrow", "one-row hot update, one transaction per request, 64 clients")
def hot_row(ctx: BenchContext) -> Outcome:
    timing = ctx.timing(full=12, quick=5)
    run, check = measure_hot_row(ctx, CONCURRENCY, timing)
    notes = [f"{run.tool}, {CONCURRENCY} connections"]
    if run.latency_avg_ms is not None:
        notes.append(f"mean latency {run.latency_avg_ms:.2f} ms")
    row = Row(
        scenario="hotrow",
        throughput=run.tps,
        unit="tps",
        concurrency=CONCURRENCY,
        duration_s=timing.duration_s,
        generator_cpu_share=run.cpu.generator_share,
        notes=tuple(notes),
        details={
            "transactions": run.transactions,
            "latency_avg_ms": run.latency_avg_ms,
            "tool": run.tool,
            "cpu": run.cpu.to_json(),
        },
    )
    return Outcome("hotrow", "hot row", "ok" if check.passed else "failed", [row], [check])


# ------------------------------------------------------------------ asyncpg fallback


async def _client(url: str, stop_at: float, counts: list[int]) -> None:
    connection = await asyncpg.connect(url)
    try:
        while time.monotonic() < stop_at:
            try:
                await connection.execute(UPDATE_SQL)
                counts[0] += 1
            except asyncpg.PostgresError:
                counts[1] += 1
    finally:
        await connection.close()


async def _run(url: str, clients: int, duration_s: float) -> dict[str, float]:
    counts = [0, 0]  # transactions, failed
    started = time.monotonic()
    await asyncio.gather(*(_client(url, started + duration_s, counts) for _ in range(clients)))
    elapsed = time.monotonic() - started
    return {"transactions": counts[0], "failed": counts[1], "tps": counts[0] / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=CONCURRENCY)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args.url, args.clients, args.duration))))


if __name__ == "__main__":
    main()
