"""What one run of the load generator measured, as read from its output file."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.harness.cpu import CallCpu, CpuReport


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds (None when there were no calls)."""

    count: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ErrorCount:
    """Failed calls of one status code and ErrorInfo reason."""

    count: int
    code: str
    reason: str
    sample: str  # the first call's status details


# Failures after which the server may or may not have done the work.
AMBIGUOUS_CODES = frozenset({"DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED", "UNKNOWN"})


@dataclass(frozen=True)
class LoadResult:
    """What the generator measured.

    `ok`, `failed` and `rps` count calls completed inside the measured window; latency
    and `errors` cover calls started inside it; `total_*` cover the whole run (warm-up
    and drain included) and are what correctness checks compare with the database.
    `cpu` covers the whole run, `call_cpu` the measured window (None when the generator
    ended before the window did).
    """

    ok: int
    failed: int
    rps: float
    completed_rps: float
    latency: Latency
    error_latency: Latency
    send_lag: Latency  # open loop: how late the generator sent calls
    errors: dict[str, ErrorCount]
    total_sent: int
    total_ok: int
    total_failed: int
    total_errors: dict[str, ErrorCount]
    not_sent: int
    collected: int
    cpu: CpuReport
    call_cpu: CallCpu | None
    raw: dict[str, Any]

    @property
    def total_ambiguous(self) -> int:
        """Failed calls whose effect is unknown (deadline, connection lost)."""
        return sum(e.count for e in self.total_errors.values() if e.code in AMBIGUOUS_CODES)

    def error_count(self, code: str, reason: str = "") -> int:
        """Calls started in the window that failed with `code` (and `reason`, if given)."""
        return sum(
            e.count
            for e in self.errors.values()
            if e.code == code and (not reason or e.reason == reason)
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary for results.json."""
        return {
            "ok": self.ok,
            "failed": self.failed,
            "rps": self.rps,
            "completed_rps": self.completed_rps,
            "latency_ms": asdict(self.latency),
            "error_latency_ms": asdict(self.error_latency),
            "send_lag_ms": asdict(self.send_lag),
            "errors": {k: asdict(v) for k, v in self.errors.items()},
            "total": {
                "sent": self.total_sent,
                "ok": self.total_ok,
                "failed": self.total_failed,
                "not_sent": self.not_sent,
                "errors": {k: asdict(v) for k, v in self.total_errors.items()},
            },
            "collected": self.collected,
            "cpu": self.cpu.to_json(),
            "window_cpu": self.call_cpu.to_json() if self.call_cpu else None,
            "generator_self_cpu": self.raw.get("cpu"),
        }


def _latency(data: dict[str, Any]) -> Latency:
    return Latency(
        count=int(data.get("count", 0)),
        mean=data.get("mean"),
        p50=data.get("p50"),
        p90=data.get("p90"),
        p99=data.get("p99"),
        p999=data.get("p999"),
        max=data.get("max"),
    )


def _errors(data: dict[str, Any]) -> dict[str, ErrorCount]:
    return {
        key: ErrorCount(int(v["count"]), str(v["code"]), str(v["reason"]), str(v["sample"]))
        for key, v in data.items()
    }


def read_result(raw: dict[str, Any], cpu: CpuReport, call_cpu: CallCpu | None) -> LoadResult:
    """The generator's output file (parsed JSON), with the CPU measured around it."""
    total = raw["total"]
    return LoadResult(
        ok=int(raw["ok"]),
        failed=int(raw["failed"]),
        rps=float(raw["rps"]),
        completed_rps=float(raw["completed_rps"]),
        latency=_latency(raw["latency_ms"]),
        error_latency=_latency(raw["error_latency_ms"]),
        send_lag=_latency(raw["send_lag_ms"]),
        errors=_errors(raw["errors"]),
        total_sent=int(total["sent"]),
        total_ok=int(total["ok"]),
        total_failed=int(total["failed"]),
        total_errors=_errors(total["errors"]),
        not_sent=int(total["not_sent"]),
        collected=int(raw["collected"]),
        cpu=cpu,
        call_cpu=call_cpu,
        raw=raw,
    )
