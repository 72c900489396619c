"""One transaction run by many clients for a while, straight on PostgreSQL.

The database baselines (`naive`, `batched`, `hotrow`) each time one transaction on a
scratch database: as a pgbench custom script (prepared statements), or, when pgbench is
not installed, the same statements from asyncpg clients (bench/baselines/sql_client.py).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

from bench.baselines.pgbench import find_pgbench, run_pgbench
from bench.harness.context import BenchContext, Timing
from bench.harness.cpu import CpuMeter, CpuReport
from bench.harness.processes import REPO_ROOT, python_module
from bench.harness.results import Row


@dataclass(frozen=True)
class Transaction:
    """Statements run as one transaction (one statement: its own implicit transaction)."""

    name: str  # names its scratch files
    statements: tuple[str, ...]

    def pgbench_script(self) -> str:
        body = "".join(f"{statement};\n" for statement in self.statements)
        return body if len(self.statements) == 1 else f"BEGIN;\n{body}COMMIT;\n"


@dataclass(frozen=True)
class TransactionRun:
    """Transactions done in one timed run."""

    transactions: int
    failed: int
    tps: float
    latency_avg_ms: float | None
    cpu: CpuReport
    tool: str  # "pgbench" or "asyncpg"


def timed_run(
    ctx: BenchContext, url: str, transaction: Transaction, clients: int, duration_s: float
) -> TransactionRun:
    """Runs `transaction` from `clients` connections for `duration_s`."""
    pgbench = find_pgbench()
    if pgbench is not None:
        script = ctx.path(f"{transaction.name}.sql")
        script.write_text(transaction.pgbench_script())
        meter = CpuMeter(server_pid=None, postgres_pid=ctx.postgres_pid)
        result = run_pgbench(pgbench, url, script, clients=clients, duration_s=duration_s)
        return TransactionRun(
            result.transactions,
            result.failed,
            result.tps,
            result.latency_avg_ms,
            meter.stop(),
            "pgbench",
        )
    statements = [arg for s in transaction.statements for arg in ("--statement", s)]
    argv = python_module(
        "bench.baselines.sql_client",
        url,
        "--clients",
        str(clients),
        "--duration",
        str(duration_s),
        *statements,
    )
    meter = CpuMeter(server_pid=None, postgres_pid=ctx.postgres_pid)
    completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    cpu = meter.stop()
    data = json.loads(completed.stdout)
    return TransactionRun(
        int(data["transactions"]), int(data["failed"]), float(data["tps"]), None, cpu, "asyncpg"
    )


def warm_and_measure(
    ctx: BenchContext, url: str, transaction: Transaction, clients: int, timing: Timing
) -> tuple[TransactionRun, TransactionRun]:
    """The warm-up run, then the measured run."""
    warm = timed_run(ctx, url, transaction, clients, timing.warmup_s)
    return warm, timed_run(ctx, url, transaction, clients, timing.duration_s)


def failed_transactions(*runs: TransactionRun) -> list[str]:
    """A problem when any transaction failed."""
    failed = sum(run.failed for run in runs)
    return [f"{failed} failed transactions"] if failed else []


def transaction_row(
    name: str,
    run: TransactionRun,
    clients: int,
    timing: Timing,
    *,
    throughput: float | None = None,
    unit: str = "tps",
    notes: tuple[str, ...] = (),
    **details: Any,
) -> Row:
    """A table row: transactions/s unless `throughput` and `unit` say otherwise."""
    all_notes = [f"{run.tool}, {clients} connections", *notes]
    if run.latency_avg_ms is not None:
        all_notes.append(f"mean latency {run.latency_avg_ms:.2f} ms")
    return Row(
        scenario=name,
        throughput=run.tps if throughput is None else throughput,
        unit=unit,
        concurrency=clients,
        duration_s=timing.duration_s,
        generator_cpu_share=run.cpu.generator_share,
        notes=tuple(all_notes),
        details={
            "transactions_per_s": run.tps,
            **details,
            "transactions": run.transactions,
            "latency_avg_ms": run.latency_avg_ms,
            "tool": run.tool,
            "cpu": run.cpu.to_json(),
        },
    )
