"""A capacity model from a `make bench` run: service replicas and database cores for a
deployment, and where it runs out first.

    python -m bench.capacity --companies 2000 --offices 10 --allocations 300 \
        --usage 2000 --import-rows 500 [--results bench/results.json]

It reads, from the run's results, the CPU each successful call cost the service process
and PostgreSQL (µs/call) in the many-tenant rows (S3 uniform for allocation, S6 over many
companies for usage, S9 for imports), the mean batches (keys per transaction, requests
per key) and the one-key ceilings (S2, S6 on one company), and scales them to the rates
asked for. The method and its limits are in docs/capacity.md.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Keep every process and the database below this share of their cores: queues grow
# fast past it (and the benchmark's figures were taken on a busy 2-core machine).
UTILISATION = 0.6
# A service process runs one event loop: it uses at most one core.
CORES_PER_REPLICA = 1.0
MIN_REPLICAS = 2  # one may restart while the other serves
DB_POOL_SIZE = 10  # connections per replica, the services' default

ALLOCATION_ROW = "S3 64 pools uniform"
ALLOCATION_HOT_ROW = "S2 hot pool"
USAGE_ROW = "S6 usage 50 companies"
USAGE_HOT_ROW = "S6 usage 1 company"
IMPORT_ROW = "S9 apply"


@dataclass(frozen=True)
class Cost:
    """What one successful call costs, measured."""

    service_us: float
    postgres_us: float
    throughput: float  # of the row it comes from (calls/s, or rows/s)
    requests_per_commit: float | None


@dataclass(frozen=True)
class Load:
    companies: int
    offices: int
    allocations: float  # Acquire calls/s, all companies
    usage: float  # RecordUsage calls/s
    import_rows: float  # CSV rows/s applied
    hottest_share: float  # of allocations and usage, the busiest company's


def _rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["scenario"]: row for s in results["scenarios"] for row in s.get("rows", [])}


def cost_of(rows: dict[str, dict[str, Any]], name: str) -> Cost | None:
    row = rows.get(name)
    if row is None or row.get("service_cpu_us_per_call") is None:
        return None
    batching = row.get("details", {}).get("batching")
    per_commit = None
    if batching:
        per_commit = batching["keys_per_transaction"] * batching["requests_per_key"]
    return Cost(
        row["service_cpu_us_per_call"],
        row.get("postgres_cpu_us_per_call") or 0.0,
        row["throughput"],
        per_commit,
    )


def plan(results: dict[str, Any], load: Load) -> list[str]:
    """The lines of the capacity plan."""
    rows = _rows(results)
    commit = results["machine"].get("git_commit")
    lines = [f"from a bench run at {results.get('written_at')} (commit {commit})"]
    total_pg = 0.0
    commits = 0.0
    replicas_total = 0
    bottlenecks: list[tuple[float, str]] = []
    for service, rate, name, hot in (
        ("pool", load.allocations, ALLOCATION_ROW, ALLOCATION_HOT_ROW),
        ("credits", load.usage, USAGE_ROW, USAGE_HOT_ROW),
    ):
        cost = cost_of(rows, name)
        if cost is None:
            lines.append(f"{service}: no measurement ({name!r} missing from the results)")
            continue
        cores = rate * cost.service_us / 1e6
        replicas = max(MIN_REPLICAS, math.ceil(cores / (CORES_PER_REPLICA * UTILISATION)))
        replicas_total += replicas
        pg = rate * cost.postgres_us / 1e6
        total_pg += pg
        if cost.requests_per_commit:
            commits += rate / cost.requests_per_commit
        lines.append(
            f"{service}: {rate:,.0f} calls/s x {cost.service_us:,.0f} us = {cores:.2f} cores"
            f" -> {replicas} replicas; PostgreSQL {cost.postgres_us:,.0f} us/call = {pg:.2f} cores"
        )
        # One (company, currency) is serialized across every replica: its ceiling is the
        # one-key rate measured, whatever the number of replicas.
        ceiling = cost_of(rows, hot)
        if ceiling is not None:
            hottest = rate * load.hottest_share
            lines.append(
                f"  busiest company: {hottest:,.0f} calls/s of a one-key ceiling of"
                f" {ceiling.throughput:,.0f} calls/s ({hottest / ceiling.throughput:.0%})"
            )
            bottlenecks.append(
                (hottest / ceiling.throughput, f"{service}: the busiest company's key")
            )
        bottlenecks.append(
            (cores / (replicas * CORES_PER_REPLICA), f"{service}: its replicas' CPU")
        )
    imports = rows.get(IMPORT_ROW)
    if imports and load.import_rows:
        per_replica = imports["throughput"]
        replicas = max(MIN_REPLICAS, math.ceil(load.import_rows / (per_replica * UTILISATION)))
        lines.append(
            f"provisioning: {load.import_rows:,.0f} import rows/s at {per_replica:,.0f} rows/s"
            f" per running import -> {replicas} replicas (imports run one at a time per import)"
        )
        replicas_total += replicas
    db_cores = max(1, math.ceil(total_pg / UTILISATION))
    lines.append(
        f"PostgreSQL: {total_pg:.2f} cores of work -> {db_cores} cores at {UTILISATION:.0%};"
        f" {commits:,.0f} commits/s"
    )
    bottlenecks.append((total_pg / db_cores, "PostgreSQL CPU"))
    connections = replicas_total * DB_POOL_SIZE
    lines.append(
        f"connections: {replicas_total} replicas x {DB_POOL_SIZE} (<SVC>_DB_POOL_SIZE) ="
        f" {connections}; past the server's max_connections put PgBouncer in front"
    )
    lines.append(
        f"tenants: {load.companies:,} companies x {load.offices} offices ="
        f" {load.companies * load.offices:,} offices; the per-call costs do not grow with"
        " them (every statement reads one company's rows through its indexes)"
    )
    share, what = max(bottlenecks)
    lines.append(f"first to run out: {what} ({share:.0%} of what it has)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--offices", type=int, default=10, help="per company")
    parser.add_argument("--allocations", type=float, default=100.0, help="Acquire calls/s")
    parser.add_argument("--usage", type=float, default=1000.0, help="RecordUsage calls/s")
    parser.add_argument("--import-rows", type=float, default=0.0, help="CSV rows/s")
    parser.add_argument(
        "--hottest-share",
        type=float,
        default=None,
        help="share of the busiest company (default 10 / companies)",
    )
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    hottest = (
        args.hottest_share if args.hottest_share is not None else min(1.0, 10 / args.companies)
    )
    load = Load(
        args.companies, args.offices, args.allocations, args.usage, args.import_rows, hottest
    )
    print("\n".join(plan(results, load)))


if __name__ == "__main__":
    main()
