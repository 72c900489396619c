"""Acquire load against a pool service, followed by the allocation check; seeding sizes.

Shared by the pool scenarios (S2-S5, S8) and S7: the load runs the generator with the
Acquire template over the workload's (company, office) choices, collects the unit ids
of every response, and checks them against the database (bench/scenarios/allocation_check.py).
"""

from __future__ import annotations

import math

from bench.harness.context import CHANNELS, CONCURRENCY, BenchContext, Timing
from bench.harness.correctness import IssuedIds
from bench.harness.results import CheckResult
from bench.loadgen.driver import run_load
from bench.loadgen.result import LoadResult
from bench.loadgen.spec import Collect, Distribution, LoadSpec, Method, Mode
from bench.scenarios.acquire_call import acquire_template
from bench.scenarios.allocation_check import check_allocations
from bench.scenarios.pool_seeding import Workload
from bench.scenarios.pool_service import PoolTarget
from licensing.pool.v1 import pool_pb2

ACQUIRE = Method(
    "licensing.pool.v1.PoolService/Acquire", pool_pb2.AcquireRequest, pool_pb2.AcquireResponse
)
# Connections per worker of the pool under test: the kernel spreads connections, not calls,
# over a pod's workers, so a pool of several gets more (4 over 2 workers end 3 to 1 or
# 4 to 0 more often than 2 to 2).
CONNECTIONS_PER_WORKER = 8
# Seeding assumes no scenario beats echo; this is used when S1 did not run.
FALLBACK_MAX_RPS = 10_000.0
SEED_MARGIN = 1.25


def units_for(rate: float, timing: Timing) -> int:
    """Units enough for `rate` successful calls/s over a whole run (warm-up and drain)."""
    return math.ceil(rate * (timing.total_s + 2) * SEED_MARGIN)


def ceiling_rps(ctx: BenchContext) -> float:
    """The fastest any scenario can go: echo's throughput in this run."""
    return ctx.throughput("S1") or FALLBACK_MAX_RPS


def acquire_load(
    ctx: BenchContext,
    target: PoolTarget,
    workload: Workload,
    label: str,
    timing: Timing,
    *,
    quantity: int = 1,
    mode: Mode = "closed",
    rate: float | None = None,
    concurrency: int = CONCURRENCY,
    distribution: Distribution | None = None,
    deadline_ms: int = 5000,
) -> tuple[LoadResult, CheckResult]:
    """Runs Acquire load, records what was handed out, and checks it against the database."""
    ids_file = ctx.path(f"{label}.unit-ids")
    spec = LoadSpec(
        target=target.address,
        tls=target.tls,
        method=ACQUIRE,
        template=acquire_template(quantity),
        choices=workload.choices,
        distribution=distribution or Distribution(),
        timing=timing,
        mode=mode,
        rate=rate,
        concurrency=concurrency,
        deadline_ms=deadline_ms,
        collect=Collect("units.unit_id", ids_file),
        channels=CONNECTIONS_PER_WORKER * target.workers if target.workers > 1 else CHANNELS,
    )
    result = run_load(spec, ctx.workdir, server_pid=target.pid, postgres_pid=ctx.postgres_pid)
    target.ledger.add(IssuedIds(ids_file, result.total_ok, quantity, result.total_ambiguous))
    check = check_allocations(
        f"{label}: no unit twice, responses match pool.units", target.database_url, target.ledger
    )
    return result, check


def dry_notes(result: LoadResult) -> tuple[str, ...]:
    """A warning when the seeded units ran out during a throughput run."""
    dry = result.error_count("FAILED_PRECONDITION", "NO_LICENSE_AVAILABLE")
    return (f"pool ran dry ({dry} NO_LICENSE_AVAILABLE): seed more units",) if dry else ()
