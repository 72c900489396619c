"""Baseline `hotrow`: one-row hot update, one transaction per request (for S6).

The textbook way to charge a shared balance: every usage is its own transaction,
`UPDATE balance SET amount = amount - 1 WHERE id = 1`, 64 clients. Each commit waits
for the WAL flush while holding the row lock, so the row serializes every caller: what
a commit-per-usage credits service could reach on one company pool. Run as a pgbench
custom script (or, without pgbench, the same statement from asyncpg clients) in a
scratch database (bench/baselines/transactions.py).
"""

from __future__ import annotations

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
from bench.harness.results import CheckResult, Outcome, finished

START_AMOUNT = 10**15
SCHEMA = (
    "CREATE TABLE balance (id integer PRIMARY KEY, amount bigint NOT NULL)",
    f"INSERT INTO balance VALUES (1, {START_AMOUNT})",
)
HOT_UPDATE = Transaction("hot-row", ("UPDATE balance SET amount = amount - 1 WHERE id = 1",))
SPENT_SQL = f"SELECT {START_AMOUNT} - amount FROM balance WHERE id = 1"


def measure_hot_row(
    ctx: BenchContext, clients: int, timing: Timing
) -> tuple[TransactionRun, CheckResult]:
    """Warms up, measures; checks that the row went down by one per transaction."""
    with scratch_database(ctx.admin_url, "hotrow") as url:
        execute(url, *SCHEMA)
        warm, run = warm_and_measure(ctx, url, HOT_UPDATE, clients, timing)
        spent = int(fetchval(url, SPENT_SQL))
    expected = warm.transactions + run.transactions
    slack = 2 * clients  # a transaction cut off by pgbench's timer may commit uncounted
    problems: list[str] = []
    if not expected <= spent <= expected + slack:
        problems.append(f"the row went down by {spent} for {expected} transactions")
    problems.extend(failed_transactions(warm, run))
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
    row = transaction_row("hotrow", run, CONCURRENCY, timing)
    return finished("hotrow", "hot row", [row], [check])
