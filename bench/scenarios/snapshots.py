"""S7: billing snapshots and a cycle close running during S2's load.

On one pool service (and, when `services.billing` can start, a billing service pointed
at it with `POOL_ADDRESS`), seeded like S2 (one hot company pool):

1. plain: S2's load (Acquire 1 unit, 64 callers, one pool) alone;
2. busy: the same load while a thread calls pool `GetSnapshot` for the hot company in a
   loop (one call at a time, back to back) and, a third of the way into the measured
   window, billing `CloseCycle` once for the last month (the current one cannot have
   ended; it takes a pool snapshot, writes the invoice and reconciles it).

Reported: the busy run's throughput against the plain run just before it (target: a
drop of at most 10 %) and against the S2 row of this run; the snapshot latency (p50,
p99). Checks: the allocation check after each load (bench/scenarios/allocation_check.py); every
snapshot counts all the seeded units (`live_units` equals the units seeded and the sum of
its lines); the invoice, when there is one, reconciles.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc

from bench.harness.context import BenchContext, Timing
from bench.harness.database import scratch_database
from bench.harness.registry import scenario
from bench.harness.results import CheckResult, Comparison, Outcome, compare, finished, skipped
from bench.harness.services import ServiceTarget, module_unavailable, service_process
from bench.loadgen.result import LoadResult
from bench.loadgen.row import load_row
from bench.scenarios.acquire_load import acquire_load, ceiling_rps, dry_notes, units_for
from bench.scenarios.pool_seeding import Workload, hot_pool
from bench.scenarios.pool_service import PoolTarget, pool_service, unavailable_reason
from licensing.billing.v1 import billing_pb2, billing_pb2_grpc
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc

TITLE = "snapshots and cycle close during S2"
BILLING = "services.billing"
MAX_DROP = 0.10
SNAPSHOT_PAUSE_S = 0.0  # between two GetSnapshot calls of the loop
SNAPSHOT_DEADLINE_S = 30.0
CLOSE_AT = 1 / 3  # of the measured window, after the warm-up


@dataclass
class SideLoad:
    """What the snapshot loop and the cycle close saw."""

    snapshot_ms: list[float] = field(default_factory=list)
    live_units: list[int] = field(default_factory=list)
    line_sums: list[int] = field(default_factory=list)
    snapshot_errors: list[str] = field(default_factory=list)
    close_ms: float | None = None
    close_error: str | None = None
    invoice_live: int | None = None
    invoice_billed: int | None = None
    invoice_balanced: bool | None = None


def _snapshot_lines(answer: pool_pb2.GetSnapshotResponse) -> int:
    offices = sum(
        line.assigned + line.spare + line.held + line.removal_scheduled
        for line in answer.office_lines
    )
    return offices + sum(line.pooled + line.held for line in answer.pool_lines)


def _snapshot_loop(address: str, company_id: str, stop: threading.Event, side: SideLoad) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        request = pool_pb2.GetSnapshotRequest(company_id=company_id)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                answer: pool_pb2.GetSnapshotResponse = stub.GetSnapshot(
                    request, timeout=SNAPSHOT_DEADLINE_S
                )
            except grpc.RpcError as error:
                side.snapshot_errors.append(f"{error.code().name}: {error.details()}")
                stop.wait(0.1)
                continue
            side.snapshot_ms.append((time.perf_counter() - started) * 1000)
            side.live_units.append(answer.live_units)
            side.line_sums.append(_snapshot_lines(answer))
            if SNAPSHOT_PAUSE_S:
                stop.wait(SNAPSHOT_PAUSE_S)


def _close_cycle(
    address: str, company_id: str, delay_s: float, stop: threading.Event, side: SideLoad
) -> None:
    if stop.wait(delay_s):
        return
    period = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    request = billing_pb2.CloseCycleRequest(
        request_id=str(uuid.uuid4()), company_id=company_id, period=period
    )
    with grpc.insecure_channel(address) as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        started = time.perf_counter()
        try:
            answer: billing_pb2.CloseCycleResponse = stub.CloseCycle(request, timeout=120)
        except grpc.RpcError as error:
            side.close_error = f"{error.code().name}: {error.details()}"
            return
        side.close_ms = (time.perf_counter() - started) * 1000
        reconciliation = answer.invoice.reconciliation
        side.invoice_live = reconciliation.live_units
        side.invoice_billed = reconciliation.billed_units
        side.invoice_balanced = reconciliation.balanced


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def side_check(side: SideLoad, seeded: int, billing: bool) -> CheckResult:
    """Snapshots count every seeded unit; the invoice reconciles."""
    problems: list[str] = []
    if not side.snapshot_ms:
        problems.append("no GetSnapshot call succeeded during the load")
    wrong_live = sorted({n for n in side.live_units if n != seeded})
    if wrong_live:
        problems.append(f"snapshots with live_units != {seeded} seeded: {wrong_live[:5]}")
    mismatched = sum(
        1 for live, lines in zip(side.live_units, side.line_sums, strict=True) if live != lines
    )
    if mismatched:
        problems.append(f"{mismatched} snapshots whose lines do not add up to live_units")
    if side.snapshot_errors:
        problems.append(
            f"{len(side.snapshot_errors)} GetSnapshot failures, e.g. {side.snapshot_errors[0]}"
        )
    if billing and side.close_error is None and side.invoice_balanced is False:
        problems.append(
            f"invoice does not reconcile: {side.invoice_live} live, {side.invoice_billed} billed"
        )
    if billing and side.close_error is None and side.invoice_live not in (None, seeded):
        problems.append(f"invoice counts {side.invoice_live} live units, {seeded} seeded")
    return CheckResult(
        "S7: snapshots count every unit, invoice reconciles",
        passed=not problems,
        facts={
            "snapshots": len(side.snapshot_ms),
            "seeded": seeded,
            "close_cycle_ms": side.close_ms,
            "close_cycle_error": side.close_error,
            "invoice_live_units": side.invoice_live,
            "invoice_billed_units": side.invoice_billed,
            "invoice_balanced": side.invoice_balanced,
        },
        problems=tuple(problems),
    )


def busy_load(
    ctx: BenchContext,
    target: PoolTarget,
    billing: ServiceTarget | None,
    workload: Workload,
    timing: Timing,
) -> tuple[LoadResult, CheckResult, SideLoad]:
    """S2's load with the snapshot loop (and the cycle close) running beside it."""
    side = SideLoad()
    stop = threading.Event()
    company_id = workload.companies[0]
    threads = [
        threading.Thread(
            target=_snapshot_loop, args=(target.address, company_id, stop, side), daemon=True
        )
    ]
    if billing is not None:
        delay = timing.warmup_s + CLOSE_AT * timing.duration_s
        threads.append(
            threading.Thread(
                target=_close_cycle,
                args=(billing.address, company_id, delay, stop, side),
                daemon=True,
            )
        )
    for thread in threads:
        thread.start()
    try:
        result, check = acquire_load(ctx, target, workload, "S7-busy", timing)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=150)
    return result, check, side


def run_s7(
    ctx: BenchContext,
    target: PoolTarget,
    billing: ServiceTarget | None,
    billing_note: str,
    timing: Timing,
) -> Outcome:
    workload = hot_pool(2 * units_for(ceiling_rps(ctx), timing))(target.address)
    plain, plain_check = acquire_load(ctx, target, workload, "S7-plain", timing)
    busy, busy_check, side = busy_load(ctx, target, billing, workload, timing)
    drop = 1 - busy.rps / plain.rps if plain.rps else None
    snapshot_p50 = _percentile(side.snapshot_ms, 0.5)
    snapshot_p99 = _percentile(side.snapshot_ms, 0.99)
    notes = [
        f"{len(side.snapshot_ms)} snapshots: p50 {snapshot_p50 or 0:.1f} ms, "
        f"p99 {snapshot_p99 or 0:.1f} ms"
    ]
    if side.close_ms is not None:
        notes.append(f"CloseCycle once: {side.close_ms:.0f} ms")
    elif side.close_error:
        notes.append(f"CloseCycle failed: {side.close_error}")
    else:
        notes.append(billing_note)
    drop_comparison = Comparison(
        "S7 plain",
        busy.rps / plain.rps if plain.rps else None,
        f"drop <= {MAX_DROP:.0%}",
        None if drop is None else drop <= MAX_DROP,
    )
    rows = [
        load_row(
            "S7 plain S2",
            plain,
            timing,
            comparisons=(compare(plain.rps, ctx.throughput("S2"), "S2"),),
            notes=dry_notes(plain),
        ),
        load_row(
            "S7 S2 + snapshots",
            busy,
            timing,
            comparisons=(drop_comparison, compare(busy.rps, ctx.throughput("S2"), "S2")),
            notes=(*dry_notes(busy), *notes),
            drop=drop,
            snapshot_ms={
                "count": len(side.snapshot_ms),
                "p50": snapshot_p50,
                "p99": snapshot_p99,
                "max": max(side.snapshot_ms, default=None),
                "mean": statistics.fmean(side.snapshot_ms) if side.snapshot_ms else None,
            },
            close_cycle_ms=side.close_ms,
            close_cycle_error=side.close_error,
        ),
    ]
    checks = [plain_check, busy_check, side_check(side, workload.units, billing is not None)]
    return finished("S7", TITLE, rows, checks)


@scenario("S7", "GetSnapshot loop and CloseCycle during S2's load", requires=("S2",))
def s7(ctx: BenchContext) -> Outcome:
    if reason := unavailable_reason():
        return skipped("S7", TITLE, reason)
    timing = ctx.timing(full=15, quick=5)
    billing_reason = module_unavailable(BILLING)
    with pool_service(ctx, "s7") as target:
        if billing_reason is not None:
            return run_s7(ctx, target, None, f"no CloseCycle: {billing_reason}", timing)
        with (
            scratch_database(ctx.admin_url, "billing_s7") as database_url,
            service_process(
                ctx,
                BILLING,
                "BILLING",
                database_url,
                "billing-s7",
                {"POOL_ADDRESS": target.address},
            ) as billing,
        ):
            return run_s7(ctx, target, billing, "", timing)
