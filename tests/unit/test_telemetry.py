"""Telemetry configuration: trace ids in log lines, the sampler, exporters from OTEL_*."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision

from libs.common import telemetry


def test_log_lines_of_a_call_carry_its_trace_and_span_ids() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(telemetry._TraceJsonFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("call") as span:
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside
    assert "span_id" not in outside


def test_database_spans_outside_a_call_start_no_trace() -> None:
    sampler = telemetry.CallsOnlyForDatabase(ALWAYS_ON)
    database = {"db.system": "postgresql"}
    assert sampler.should_sample(None, 1, "SELECT", attributes=database).decision == Decision.DROP
    assert sampler.should_sample(None, 1, "/x.Y/Z").decision == Decision.RECORD_AND_SAMPLE
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("call") as span:
        inside = trace.set_span_in_context(span)
        sampled = sampler.should_sample(inside, 1, "SELECT", attributes=database)
    assert sampled.decision == Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        ({}, [], []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp"], ["otlp"]),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"},
            [],
            ["otlp"],
        ),
        ({"OTEL_METRICS_EXPORTER": "console,otlp"}, [], ["console", "otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, ["otlp"], []),
    ],
)
def test_exporters_follow_the_otel_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], traces: list[str], metrics: list[str]
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert telemetry._exporters("TRACES") == traces
    assert telemetry._exporters("METRICS") == metrics
