"""Running pgbench with a custom script, and reading its summary."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SEARCH_PATH = ("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def find_pgbench() -> str | None:
    """pgbench on PATH, or in a PostgreSQL bin folder; None when there is none."""
    found = shutil.which("pgbench")
    if found:
        return found
    for folder in _SEARCH_PATH:
        candidate = Path(folder) / "pgbench"
        if candidate.exists():
            return str(candidate)
    return None


def pgbench_version(pgbench: str) -> str:
    out = subprocess.run([pgbench, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


@dataclass(frozen=True)
class PgbenchResult:
    """pgbench's summary of one run."""

    transactions: int
    failed: int
    tps: float  # without the initial connection time
    latency_avg_ms: float | None
    output: str


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def run_pgbench(
    pgbench: str,
    url: str,
    script: Path,
    *,
    clients: int,
    duration_s: float,
    threads: int = 2,
) -> PgbenchResult:
    """Runs `script` with `clients` connections for `duration_s` (prepared statements)."""
    argv = [
        pgbench,
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={min(threads, clients)}",
        f"--time={max(1, round(duration_s))}",
        f"--file={script}",
        url,
    ]
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed ({completed.returncode}):\n{output[-2000:]}")
    processed = _number(r"number of transactions actually processed: (\d+)", output)
    tps = _number(r"^tps = ([\d.]+)", output)
    if processed is None or tps is None:
        raise RuntimeError(f"cannot read pgbench's summary:\n{output[-2000:]}")
    return PgbenchResult(
        transactions=int(processed),
        failed=int(_number(r"number of failed transactions: (\d+)", output) or 0),
        tps=tps,
        latency_avg_ms=_number(r"latency average = ([\d.]+) ms", output),
        output=output,
    )
