"""The platform's metrics, through the OpenTelemetry metrics API.

Instruments are made once, here, from the global meter: until `telemetry` installs a
meter provider (or when metrics are off) they record nothing, at the cost of a call.

- `rpc.server.call.duration` (s), by `rpc.method` and `rpc.response.status_code`: the
  RPC semantic conventions, recorded by the guard around every handler (`error_status.CallGuard`).
- `licensing.batch.size`, `licensing.batch.keys`: requests, and keys, per batch
  transaction of a coalesced writer (pool allocations, credits usage), by `licensing.writer`.
- `licensing.writer.queue.depth`, `licensing.writer.keys`: requests waiting, and keys
  (company, currency) with work, per writer.
- `licensing.load_shed`: calls refused RESOURCE_EXHAUSTED OVERLOADED, by `rpc.method`.
- `licensing.holds.expired`, `licensing.purchases.in_progress`, `licensing.import.rows`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import grpc
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from libs.common import call_context

_meter = metrics.get_meter("licensing")
T = TypeVar("T")

# Seconds: from a cached read to a slow batch.
_DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

rpc_server_duration = _meter.create_histogram(
    "rpc.server.call.duration",
    unit="s",
    description="Measures the duration of an incoming Remote Procedure Call (RPC).",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
)
batch_size = _meter.create_histogram(
    "licensing.batch.size",
    unit="{request}",
    description="Requests handled in one batch transaction of a coalesced writer.",
    explicit_bucket_boundaries_advisory=_BATCH_BUCKETS,
)
batch_keys = _meter.create_histogram(
    "licensing.batch.keys",
    unit="{key}",
    description="Keys (company, currency) served by one batch transaction of a coalesced writer.",
    explicit_bucket_boundaries_advisory=_BATCH_BUCKETS,
)
load_shed = _meter.create_counter(
    "licensing.load_shed",
    unit="{call}",
    description="Calls refused RESOURCE_EXHAUSTED OVERLOADED (load shed).",
)
holds_expired = _meter.create_counter(
    "licensing.holds.expired", unit="{hold}", description="Holds expired (their time was up)."
)
import_rows = _meter.create_counter(
    "licensing.import.rows", unit="{row}", description="Rows applied by mass-configuration imports."
)

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def record_call(method: str, code: grpc.StatusCode | int | None, seconds: float) -> None:
    """One finished call of `method` ("/pkg.Service/Method"); `code` None means OK."""
    if code is None:
        name = "OK"
    elif isinstance(code, grpc.StatusCode):
        name = code.name
    else:
        name = _CODE_NAMES.get(code, str(code))
    rpc_server_duration.record(
        seconds,
        {
            "rpc.system.name": "grpc",
            "rpc.method": method.lstrip("/"),
            "rpc.response.status_code": name,
        },
    )


def shed() -> None:
    """A call (the current one, if any) refused to shed load."""
    call = call_context.current()
    load_shed.add(1, {"rpc.method": call.method.lstrip("/") if call else "_OTHER"})


class Writer(Protocol):
    """What the queue gauges read of a coalesced writer."""

    @property
    def name(self) -> str: ...

    def depth(self) -> tuple[int, int]:
        """(requests waiting, keys with work)."""
        ...


_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


def watch_writer(writer: Writer) -> None:
    if writer.name:
        _writers.add(writer)


def _queue_depth(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(w.depth()[0], {"licensing.writer": w.name}) for w in list(_writers)]


def _keys(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(w.depth()[1], {"licensing.writer": w.name}) for w in list(_writers)]


_meter.create_observable_gauge(
    "licensing.writer.queue.depth",
    [_queue_depth],
    unit="{request}",
    description="Requests waiting for a batch of a coalesced writer.",
)
_meter.create_observable_gauge(
    "licensing.writer.keys",
    [_keys],
    unit="{key}",
    description="Keys (company, currency) with requests waiting or in a batch.",
)

_in_progress: weakref.WeakKeyDictionary[Any, Callable[[Any], int]] = weakref.WeakKeyDictionary()


def watch_purchases(owner: T, count: Callable[[T], int]) -> None:
    """`count(owner)` says how many purchases `owner` drives now (while it lives)."""
    _in_progress[owner] = count


def _purchases(options: CallbackOptions) -> Iterable[Observation]:
    owners = list(_in_progress.items())
    return [Observation(sum(count(owner) for owner, count in owners))] if owners else []


_meter.create_observable_up_down_counter(
    "licensing.purchases.in_progress",
    [_purchases],
    unit="{purchase}",
    description="Purchases this process is driving (leases held).",
)
