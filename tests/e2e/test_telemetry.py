"""OTLP export, received by a small in-test collector: one purchase is one trace across
provisioning -> billing -> pool, with database spans, and the services export metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support import tls
from tests.support.billing import Shop
from tests.support.otlp import Received, Span, eventually, otlp_receiver
from tests.support.pool import Company, rid
from tests.support.provisioning import Processes, Tenant, spawned_platform

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PROVISIONING = "/licensing.provisioning.v1.ProvisioningService/"
POOL = "/licensing.pool.v1.PoolService/"
BILLING = "/licensing.billing.v1.BillingService/"
SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER


def otel_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """What every service process inherits: export to `endpoint`, soon."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        monkeypatch.delenv(name, raising=False)


async def purchase(running: Processes) -> str:
    """CreateUser that must buy its license first; the user id."""
    shop = Shop(running.billing_stub, running.platform.pool)
    await shop.plan("hq", "USD", {"connect": 1000}, datetime.now(UTC) - timedelta(days=1))
    tenant = Tenant(running.platform, Company(running.platform.pool, shop.company_id, shop.offices))
    created = await tenant.stub.CreateUser(
        pb.CreateUserRequest(
            request_id=rid(),
            company_id=tenant.company_id,
            office_id=shop.offices["hq"],
            display_name="Bob",
            license_type="connect",
            purchase_if_needed=True,
        )
    )
    assert created.user.license_unit_id
    return created.user.user_id


def the_trace(received: Received, expected: set[tuple[str, str]]) -> list[Span]:
    """The trace rooted at provisioning's CreateUser once it holds every expected
    (service, server span) pair and database spans in each service; [] before."""
    roots = [
        s
        for s in received.spans
        if s.name == PROVISIONING + "CreateUser" and s.parent_id is None and s.kind == SERVER
    ]
    if len(roots) != 1:
        return []
    trace = [s for s in received.spans if s.trace_id == roots[0].trace_id]
    servers = {(s.service, s.name) for s in trace if s.kind == SERVER}
    databases = {s.service for s in trace if s.attributes.get("db.system") == "postgresql"}
    if expected <= servers and databases >= {svc for svc, _ in expected}:
        return trace
    return []


async def test_one_purchase_is_one_trace_with_database_spans_and_metrics(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_receiver() as (endpoint, received):
        otel_env(monkeypatch, endpoint)
        async with spawned_platform(database_url) as running:
            user_id = await purchase(running)
            async with tls.channel(running.provisioning.address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            expected = {
                ("provisioning", PROVISIONING + "CreateUser"),
                ("billing", BILLING + "PurchaseLicenses"),
                ("pool", POOL + "AddUnits"),
                ("pool", POOL + "Reserve"),
                ("pool", POOL + "Commit"),
            }
            trace = await eventually(lambda: the_trace(received, expected))
            assert trace, f"no complete trace in {len(received.spans)} spans"

            def durations() -> dict[tuple[str, str, str], float]:
                found = {}
                for p in received.points:
                    if p.metric == "rpc.server.call.duration":
                        status = p.attributes["rpc.response.status_code"]
                        found[(p.service, p.attributes["rpc.method"], status)] = p.value
                return found

            wanted = {
                ("provisioning", "licensing.provisioning.v1.ProvisioningService/CreateUser", "OK"),
                ("billing", "licensing.billing.v1.BillingService/PurchaseLicenses", "OK"),
                ("pool", "licensing.pool.v1.PoolService/Reserve", "OK"),
            }
            found = await eventually(lambda: wanted <= set(durations()) and durations())
            assert found, durations()
            assert all(found[key] > 0 for key in wanted)

            def batches() -> list[float]:
                return [
                    p.value
                    for p in received.points
                    if p.metric == "licensing.batch.size"
                    and p.attributes.get("licensing.writer") == "pool.allocation"
                    and p.value > 0
                ]

            assert await eventually(batches)

    by_id = {s.span_id: s for s in trace}
    (root,) = [s for s in trace if s.parent_id is None]
    assert root.service == "provisioning"
    for span in trace:  # one tree: every parent is in the trace
        assert span.parent_id is None or span.parent_id in by_id, span
        assert span.end >= span.start > 0  # times are kept
    pool_database = [s for s in trace if s.service == "pool" and "db.system" in s.attributes]
    assert pool_database
    # Health checks and reflection are not traced.
    assert not [s for s in received.spans if "grpc.health" in s.name or "reflection" in s.name]
    assert user_id


async def test_a_service_with_tracing_off_passes_the_trace_on(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Billing records no spans; the pool calls it makes still belong to provisioning's
    trace, under provisioning's call to billing."""
    async with otlp_receiver() as (endpoint, received):
        otel_env(monkeypatch, endpoint)
        off = {"OTEL_TRACES_EXPORTER": "none"}
        async with spawned_platform(database_url, billing_env=off) as running:
            await purchase(running)
            expected = {
                ("provisioning", PROVISIONING + "CreateUser"),
                ("pool", POOL + "AddUnits"),
                ("pool", POOL + "Commit"),
            }
            trace = await eventually(lambda: the_trace(received, expected))
            assert trace, f"no complete trace in {len(received.spans)} spans"

    assert not [s for s in received.spans if s.service == "billing"]
    by_id = {s.span_id: s for s in trace}
    (add_units,) = [s for s in trace if s.name == POOL + "AddUnits" and s.kind == SERVER]
    caller = by_id[add_units.parent_id]  # type: ignore[index]
    assert (caller.service, caller.name) == ("provisioning", BILLING + "PurchaseLicenses")
