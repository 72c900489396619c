"""What one run of the load generator does: the method, the requests, the load's shape.

Two modes of unary calls:

- closed loop: `concurrency` callers, each sending its next call when the last returns;
  gives the maximum throughput;
- open loop: calls sent at a constant `rate`, each call's latency measured from the
  time it was meant to be sent, so a stalled server (or generator) cannot hide.

Requests come from a template (see bench/loadgen/requests.py): `{{uuid}}` is a fresh UUID
per call, `{{choice.KEY}}` a field of the item picked for the call from `choices`
(uniformly, or Zipf-skewed with `Distribution("zipf", s)`, item 0 the hottest).

With `collect`, the strings at a dotted path of every successful response (for example
`units.unit_id`) are written to a file, one per line: the correctness checks read it.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from google.protobuf.message import Message

from bench.harness.context import CHANNELS, CONCURRENCY, Timing
from bench.loadgen.requests import compile_requests, field_numbers
from libs.common.tls import TlsFiles

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
    tls: TlsFiles | None = None  # mutual TLS: the client certificate, key and CA

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
            "tls": None
            if self.tls is None
            else {"cert": str(self.tls.cert), "key": str(self.tls.key), "ca": str(self.tls.ca)},
        }
