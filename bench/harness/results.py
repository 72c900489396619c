"""What a scenario reports: rows of measurements, comparisons with baselines, checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "failed", "error", "skipped"]


@dataclass(frozen=True)
class Comparison:
    """A measurement divided by a baseline measured in the same run."""

    baseline: str
    ratio: float | None
    target: str = ""
    passed: bool | None = None


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    scenario: str
    throughput: float
    unit: str  # "rps", "tps", "units/s" or "rows/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    concurrency: int | None = None
    rate: float | None = None  # open loop: the target arrival rate per second
    duration_s: float = 0.0
    generator_cpu_share: float | None = None  # of the busy CPU of the machine
    # CPU per successful call over the measured window, of the server process and of
    # PostgreSQL (every process of its postmaster), in microseconds.
    service_cpu_us_per_call: float | None = None
    postgres_cpu_us_per_call: float | None = None
    comparisons: tuple[Comparison, ...] = ()
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def load(self) -> str:
        """How the load was applied, for the table."""
        if self.rate is not None:
            return f"{self.rate:,.0f}/s open, {self.duration_s:g}s"
        if self.concurrency is not None:
            return f"{self.concurrency} conc, {self.duration_s:g}s"
        return f"{self.duration_s:g}s"


@dataclass(frozen=True)
class CheckResult:
    """A correctness check run after a scenario. A failed check fails the run."""

    name: str
    passed: bool
    facts: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass
class Outcome:
    """Everything one scenario produced."""

    scenario: str
    title: str
    status: Status
    rows: list[Row] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    message: str = ""
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def finished(scenario: str, title: str, rows: list[Row], checks: list[CheckResult]) -> Outcome:
    """A scenario that ran: `ok` when every check passed, else `failed`."""
    passed = all(check.passed for check in checks)
    return Outcome(scenario, title, "ok" if passed else "failed", rows, checks)


def skipped(scenario: str, title: str, reason: str) -> Outcome:
    """A scenario that could not run here, and why."""
    return Outcome(scenario, title, "skipped", message=reason)


def compare(
    value: float | None, baseline: float | None, name: str, *, at_least: float | None = None
) -> Comparison:
    """`value / baseline`, and whether it reaches `at_least` when a target is set."""
    if value is None or not baseline:
        return Comparison(name, None, f">= {at_least:g}x" if at_least is not None else "")
    ratio = value / baseline
    if at_least is None:
        return Comparison(name, ratio)
    return Comparison(name, ratio, f">= {at_least:g}x", ratio >= at_least)


def at_most(value: float | None, limit: float | None, name: str, target: str) -> Comparison:
    """A comparison that passes when `value <= limit` (ratio is value / limit)."""
    if value is None or limit is None or limit <= 0:
        return Comparison(name, None, target)
    return Comparison(name, value / limit, target, value <= limit)
