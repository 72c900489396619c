"""Table rows made from load generator results."""

from __future__ import annotations

from typing import Any

from bench.harness.context import Timing
from bench.harness.results import Comparison, Row
from bench.loadgen.result import LoadResult


def load_row(
    name: str,
    result: LoadResult,
    timing: Timing,
    *,
    per_call: int = 1,
    comparisons: tuple[Comparison, ...] = (),
    notes: tuple[str, ...] = (),
    **details: Any,
) -> Row:
    """A row from a generator run: throughput is successful calls (x `per_call` units)/s."""
    raw = result.raw
    all_notes = list(notes)
    if result.failed:
        all_notes.append(f"{result.failed} failed calls")
    if result.not_sent:
        all_notes.append(f"{result.not_sent} calls not sent (generator in-flight cap)")
    if result.cpu.generator_cores > 0.9:
        all_notes.append("generator used a whole core: it may be the bottleneck")
    return Row(
        scenario=name,
        throughput=result.rps * per_call,
        unit="rps" if per_call == 1 else "units/s",
        p50_ms=result.latency.p50,
        p99_ms=result.latency.p99,
        concurrency=raw.get("concurrency"),
        rate=raw.get("target_rate"),
        duration_s=timing.duration_s,
        generator_cpu_share=result.cpu.generator_share,
        service_cpu_us_per_call=result.call_cpu.service_us_per_call if result.call_cpu else None,
        postgres_cpu_us_per_call=result.call_cpu.postgres_us_per_call if result.call_cpu else None,
        comparisons=comparisons,
        notes=tuple(all_notes),
        details={"load": result.summary(), **details},
    )
