"""What every scenario receives: the run's mode, database, scratch folder and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.results import Outcome, Row

# Concurrent callers of the closed-loop runs (S1, S2, S3 and the naive baseline use the
# same number, so that their ratios compare like with like).
CONCURRENCY = 64
# gRPC connections the load generator spreads its calls over.
CHANNELS = 4


@dataclass(frozen=True)
class Timing:
    """How long a load runs: a warm-up that is not measured, then the measured window."""

    warmup_s: float
    duration_s: float

    @property
    def total_s(self) -> float:
        return self.warmup_s + self.duration_s


@dataclass
class BenchContext:
    """Passed to every scenario function."""

    quick: bool
    admin_url: str  # the PostgreSQL server (its "postgres" database)
    postgres_pid: int | None  # its postmaster, when it runs on this machine (CPU accounting)
    workdir: Path  # scratch files of this run
    keep: bool = False  # keep workdir at the end (set when something failed)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def timing(self, *, full: float, quick: float) -> Timing:
        """The measured window for this mode, with a warm-up of a fifth of it (>= 1 s)."""
        duration = quick if self.quick else full
        return Timing(warmup_s=max(1.0, round(duration / 5)), duration_s=duration)

    def row(self, scenario: str, index: int = 0) -> Row | None:
        """A row of a scenario that already ran in this invocation (for ratios)."""
        outcome = self.outcomes.get(scenario)
        if outcome is None or outcome.status not in ("ok", "failed"):
            return None
        if index >= len(outcome.rows):
            return None
        return outcome.rows[index]

    def throughput(self, scenario: str, index: int = 0) -> float | None:
        """The throughput of an earlier scenario's row, or None if it did not run."""
        row = self.row(scenario, index)
        return row.throughput if row else None

    def path(self, name: str) -> Path:
        """A file in this run's scratch folder."""
        return self.workdir / name
