"""The load generator (bench/generator, in Go) as seen from Python.

One generator drives every gRPC scenario, echo included, so that ratios compare servers
and not clients. It runs unary calls in one of two modes:

- closed loop: `concurrency` callers, each sending its next call when the last returns;
  gives the maximum throughput;
- open loop: calls sent at a constant `rate`, each call's latency measured from the
  time it was meant to be sent, so a stalled server (or generator) cannot hide.

Requests come from a template (see bench/requests.py): `{{uuid}}` is a fresh UUID per
call, `{{choice.KEY}}` a field of the item picked for the call from `choices`
(uniformly, or Zipf-skewed with `Distribution("zipf", s)`, item 0 the hottest).

With `collect`, the strings at a dotted path of every successful response (for example
`units.unit_id`) are written to a file, one per line: the correctness checks read it.

Why Go: on these machines a grpc-js (Node) client spent 350-450 us of CPU per call and a
grpc.aio client 270 us, as much as the Python server they drive, so either would share
the 2 cores half and half with the server; grpc-go spends about 90 us.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from google.protobuf.message import Message

from bench.context import CHANNELS, CONCURRENCY, Timing
from bench.cpu import CpuMeter, CpuReport
from bench.generator_build import ensure_generator
from bench.requests import compile_requests, field_numbers

Mode = Literal["closed", "open"]


@dataclass(frozen=True)
class Distribution:
    """How the item of `choices` is picked per call."""

    kind: Literal["uniform", "zipf"] = "uniform"
    s: float = 1.0  # Zipf exponent


@dataclass(frozen=True)
class Collect:
    """Write the strings at `path` in each successful response to `file`."""

    path: str
    file: Path


@dataclass(frozen=True)
class Method:
    """A unary method: its full name and message classes."""

    name: str  # "package.Service/Method"
    request_type: type[Message]
    response_type: type[Message]


@dataclass(frozen=True)
class LoadSpec:
    """One run of the generator."""

    target: str  # host:port
    method: Method
    template: dict[str, Any]
    timing: Timing
    mode: Mode = "closed"
    concurrency: int = CONCURRENCY
    rate: float | None = None  # open loop: calls per second
    choices: tuple[dict[str, Any], ...] = ()
    distribution: Distribution = field(default_factory=Distribution)
    deadline_ms: int = 5000
    channels: int = CHANNELS
    max_inflight: int = 100_000  # open loop: calls beyond it are not sent (counted)
    collect: Collect | None = None
    seed: int = 1
    procs: int = 1  # OS threads (GOMAXPROCS) the generator may use

    def to_config(self) -> dict[str, Any]:
        """The generator's JSON configuration."""
        if self.mode == "open" and not self.rate:
            raise ValueError("an open-loop run needs a rate")
        compiled = compile_requests(self.method.request_type, self.template, self.choices)
        collect = None
        if self.collect:
            numbers = field_numbers(self.method.response_type.DESCRIPTOR, self.collect.path)
            collect = {"field_path": numbers, "file": str(self.collect.file)}
        return {
            "target": self.target,
            "method": f"/{self.method.name}",
            "requests": [base64.b64encode(r).decode() for r in compiled.requests],
            "uuid_offsets": [list(o) for o in compiled.uuid_offsets],
            "mode": self.mode,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "warmup_s": self.timing.warmup_s,
            "duration_s": self.timing.duration_s,
            "distribution": asdict(self.distribution),
            "deadline_ms": self.deadline_ms,
            "channels": self.channels,
            "max_inflight": self.max_inflight,
            "procs": self.procs,
            "collect": collect,
            "seed": self.seed,
        }


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


_runs = 0


def run_load(spec: LoadSpec, workdir: Path, server_pid: int | None = None) -> LoadResult:
    """Runs the generator to completion and returns its measurements.

    `server_pid` is the process (tree) whose CPU is reported as the server's.
    """
    global _runs
    _runs += 1
    generator = ensure_generator()
    config_path = workdir / f"load-{_runs}.json"
    out_path = workdir / f"load-{_runs}.out.json"
    config_path.write_text(json.dumps(spec.to_config()))
    meter = CpuMeter(server_pid)
    completed = subprocess.run(
        [str(generator), str(config_path), str(out_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    cpu = meter.stop()
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed ({completed.returncode}): {completed.stderr}")
    raw: dict[str, Any] = json.loads(out_path.read_text())
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
        raw=raw,
    )
