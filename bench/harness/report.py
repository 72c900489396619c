"""Printing the machine, progress and the results table; writing results.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness.results import Comparison, Outcome, Row

COLUMNS = (
    "scenario",
    "load",
    "throughput",
    "p50 ms",
    "p99 ms",
    "gen CPU",
    "svc/pg us/call",
    "vs",
    "ratio",
    "target",
)


def print_machine(machine: dict[str, Any]) -> None:
    postgres = machine["postgres"]
    print("machine")
    print(
        f"  cores {machine['cores']}  ({machine['cpu_model']}), memory {machine['memory_gib']} GiB,"
        f" load average at start {machine['load_average_at_start']}"
    )
    print(
        f"  Python {machine['python']}, grpcio {machine['grpcio']}, "
        f"protobuf {machine['protobuf']}, {machine['go'] or 'no Go'}"
    )
    print(
        f"  PostgreSQL {postgres.get('server_version')} ({machine['database']}): "
        f"synchronous_commit={postgres.get('synchronous_commit')} fsync={postgres.get('fsync')} "
        f"max_connections={postgres.get('max_connections')}; {machine['pgbench'] or 'no pgbench'}"
    )
    postmaster = machine["postgres_postmaster_pid"]
    print(
        f"  PostgreSQL CPU: the processes of postmaster {postmaster}"
        if postmaster
        else "  PostgreSQL CPU: not measured (the server does not run on this machine)"
    )
    print(flush=True)


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _cpu_per_call(row: Row) -> str:
    """`service / PostgreSQL` CPU microseconds per successful call, "-" where not measured."""
    service, postgres = row.service_cpu_us_per_call, row.postgres_cpu_us_per_call
    if service is None and postgres is None:
        return "-"
    return f"{_number(service, 0)} / {_number(postgres, 0)}"


def _verdict(comparison: Comparison) -> str:
    if comparison.passed is None:
        return comparison.target or ""
    return f"{comparison.target} {'ok' if comparison.passed else 'MISS'}"


def _row_lines(row: Row) -> list[tuple[str, ...]]:
    head = (
        row.scenario,
        row.load,
        f"{row.throughput:,.0f} {row.unit}",
        _number(row.p50_ms),
        _number(row.p99_ms),
        _share(row.generator_cpu_share),
        _cpu_per_call(row),
    )
    comparisons = row.comparisons or (Comparison("", None),)
    lines = []
    for index, comparison in enumerate(comparisons):
        first = head if index == 0 else ("",) * len(head)
        ratio = "-" if comparison.ratio is None else f"{comparison.ratio:.2f}x"
        lines.append(
            (
                *first,
                comparison.baseline or "-",
                ratio if comparison.baseline else "-",
                _verdict(comparison),
            )
        )
    return lines


def print_table(outcomes: Sequence[Outcome]) -> None:
    """One line per row and comparison; a skip, an error or a failed check is one line
    whose message runs past the columns (it does not widen them)."""
    lines: list[tuple[str, ...]] = [COLUMNS]
    for outcome in outcomes:
        if outcome.status in ("skipped", "error"):
            message = outcome.message.splitlines()[0] if outcome.message else ""
            lines.append((outcome.scenario, outcome.status, message[:100]))
            continue
        for row in outcome.rows:
            lines.extend(_row_lines(row))
        for check in outcome.checks:
            if not check.passed:
                problem = check.problems[0] if check.problems else check.name
                lines.append((outcome.scenario, "CHECK FAILED", problem[:100]))
    table = [line for line in lines if len(line) == len(COLUMNS)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for number, line in enumerate(lines):
        if len(line) == len(COLUMNS):
            cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        else:  # scenario, status, message
            cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1]), line[2]]
        print("  ".join(cells).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
    print(flush=True)


def print_outcome(outcome: Outcome) -> None:
    """Progress after one scenario: its rows, notes and checks."""
    if outcome.status in ("skipped", "error"):
        print(f"   {outcome.status}: {outcome.message}", flush=True)
        return
    for row in outcome.rows:
        print(
            f"   {row.scenario}: {row.throughput:,.0f} {row.unit}, p50 {_number(row.p50_ms)} ms,"
            f" p99 {_number(row.p99_ms)} ms, {row.load}, generator CPU "
            f"{_share(row.generator_cpu_share)}"
        )
        if row.service_cpu_us_per_call is not None or row.postgres_cpu_us_per_call is not None:
            print(
                f"     CPU per call: service {_number(row.service_cpu_us_per_call, 0)} us, "
                f"PostgreSQL {_number(row.postgres_cpu_us_per_call, 0)} us"
            )
        for note in row.notes:
            print(f"     note: {note}")
    for check in outcome.checks:
        verdict = "passed" if check.passed else "FAILED"
        print(f"   check {verdict}: {check.name}")
        for problem in check.problems:
            print(f"     - {problem}")
    print(f"   ({outcome.elapsed_s:.0f}s)", flush=True)


def write_results(
    path: Path, machine: dict[str, Any], outcomes: Sequence[Outcome], options: dict[str, Any]
) -> None:
    document = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options,
        "machine": machine,
        "passed": all(o.status in ("ok", "skipped") for o in outcomes),
        "scenarios": [o.to_json() for o in outcomes],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
