"""The machine a run measured: cores, versions, database settings."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.baselines.pgbench import find_pgbench, pgbench_version
from bench.harness.database import server_facts
from bench.loadgen.build import go_version


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def _git_commit() -> str | None:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


def machine_facts(admin_url: str, database_source: str, postgres_pid: int | None) -> dict[str, Any]:
    """Everything printed before the results and stored with them."""
    pgbench = find_pgbench()
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "load_average_at_start": _load_average(),
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "asyncpg": _version("asyncpg"),
        "go": go_version(),
        "pgbench": pgbench_version(pgbench) if pgbench else None,
        "postgres": server_facts(admin_url),
        "database": database_source,
        "postgres_postmaster_pid": postgres_pid,  # None: its CPU cannot be measured here
        "git_commit": _git_commit(),
    }
