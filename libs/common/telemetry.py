"""Structured logs, and OpenTelemetry traces and metrics, configured once per process.

Configured by the standard `OTEL_*` environment variables:

- `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`: `otlp`, `console` or `none` (a
  comma-separated list). Unset, each is `otlp` when an OTLP endpoint is set
  (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the `_TRACES_` / `_METRICS_` one), else `none`.
  OTLP goes over gRPC (`OTEL_EXPORTER_OTLP_*`: endpoint, headers, certificates, timeout...).
- `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`), `OTEL_TRACES_SAMPLER_ARG`:
  sampling follows the caller's decision. Database spans outside any call (sweepers)
  start no trace of their own.
- `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_BSP_*` (span batches),
  `OTEL_METRIC_EXPORT_INTERVAL`; `OTEL_SDK_DISABLED=true` turns everything off.

`<SVC>_TRACES` (`console`, or a file that receives one JSON span per line) adds a local
exporter for runs without a collector.

With tracing off the service records nothing but still passes each caller's trace
context on to the services it calls, so a trace through it stays one trace (its calls
hang under its caller's span). Health and reflection calls are never traced. With
tracing on, database statements are spans too (asyncpg's instrumentation).

Every JSON log line written during a traced call carries `trace_id` and `span_id`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_prefix
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from pythonjsonlogger.json import JsonFormatter

log = logging.getLogger(__name__)

# Server calls that are not traced (probes every few seconds; tooling).
TRACED_CALLS = negate(any_of(service_prefix("grpc.health.v1."), service_prefix("grpc.reflection.")))


class _TraceJsonFormatter(JsonFormatter):
    """Adds the current span's trace and span ids to every line written inside a call."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            log_data["trace_id"] = f"{context.trace_id:032x}"
            log_data["span_id"] = f"{context.span_id:016x}"


def configure_logging(service: str, level: str) -> None:
    """One JSON object per line on stderr, tagged with the service name."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _TraceJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "asctime": "time"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line (local runs, tests)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            parent = span.parent
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "instance": span.resource.attributes.get("service.instance.id"),
                        "trace_id": f"{context.trace_id:032x}" if context else None,
                        "span_id": f"{context.span_id:016x}" if context else None,
                        "parent_id": f"{parent.span_id:016x}" if parent else None,
                    }
                )
            )
        with self._lock, open(self._path, "a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


class CallsOnlyForDatabase(Sampler):
    """The configured sampler, except that a database span with no parent (work outside
    any call: hold sweeps, lease renewals) starts no trace."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and attributes and "db.system" in attributes:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"CallsOnlyForDatabase{{{self._delegate.get_description()}}}"


def _exporters(signal: str) -> list[str]:
    """The exporters `OTEL_<signal>_EXPORTER` names (see the module's docstring)."""
    named = os.environ.get(f"OTEL_{signal}_EXPORTER")
    if named is None:
        endpoint = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        named = "otlp" if endpoint else "none"
    found = [name.strip().lower() for name in named.split(",")]
    return [name for name in found if name and name != "none"]


def _span_exporter(name: str) -> SpanExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console, none)")


def _metric_exporter(name: str) -> MetricExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    if name == "console":
        return ConsoleMetricExporter()
    raise ValueError(f"OTEL_METRICS_EXPORTER: unknown exporter {name!r} (otlp, console, none)")


@dataclass
class Telemetry:
    """What `configure_telemetry` installed; `shutdown` sends what is still buffered."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    readers: list[MetricReader] = field(default_factory=list)

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def resource_of(service: str) -> Resource:
    attributes: dict[str, str] = {
        "service.namespace": "licensing",
        "service.instance.id": str(uuid.uuid4()),  # one per process: replicas apart
    }
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service
    return Resource.create(attributes)  # with OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES


def configure_telemetry(service: str, traces: str = "none") -> Telemetry:
    """Sets the global tracer and meter providers from the environment; `traces` is the
    service's own `<SVC>_TRACES` ("none", "console" or a file path)."""
    installed = Telemetry()
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return installed
    resource = resource_of(service)
    span_exporters = [_span_exporter(name) for name in _exporters("TRACES")]
    if traces == "console" and not any(isinstance(e, ConsoleSpanExporter) for e in span_exporters):
        span_exporters.append(ConsoleSpanExporter())
    if span_exporters or traces not in ("none", "console", ""):
        sampler = CallsOnlyForDatabase(_get_from_env_or_default())
        provider = TracerProvider(resource=resource, sampler=sampler)
        for exporter in span_exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        if traces not in ("none", "console", ""):
            provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(traces)))
        trace.set_tracer_provider(provider)
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
        installed.tracer_provider = provider
    # Otherwise no tracer provider: the API's no-op tracer passes the caller's context on.
    readers: list[MetricReader] = [
        PeriodicExportingMetricReader(_metric_exporter(name)) for name in _exporters("METRICS")
    ]
    if readers:
        meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        metrics.set_meter_provider(meter_provider)
        installed.meter_provider = meter_provider
        installed.readers = readers
    return installed
