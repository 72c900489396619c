"""Trace context across service processes: one call to provisioning is one trace, with
spans in provisioning, pool and billing, each linked to its caller's span.

Every service writes its spans to one file (`<SVC>_TRACES`), one JSON object per line:
name, service, trace_id, span_id, parent_id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support.billing import Shop
from tests.support.pool import Company, rid
from tests.support.provisioning import Processes, Tenant, spawned_platform

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PROVISIONING = "/licensing.provisioning.v1.ProvisioningService/"
POOL = "/licensing.pool.v1.PoolService/"
BILLING = "/licensing.billing.v1.BillingService/"
Span = dict[str, str | None]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def traced(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Processes, Path]]:
    spans = tmp_path_factory.mktemp("traces") / "spans.jsonl"
    async with spawned_platform(database_url, traces=str(spans)) as running:
        yield running, spans


def read_spans(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trace_ids(path: Path) -> set[str | None]:
    return {s["trace_id"] for s in read_spans(path)}


async def trace_of(
    path: Path, method: str, expected: set[tuple[str, str]], before: set[str | None]
) -> list[Span]:
    """The spans of the one new trace (not in `before`) whose root is provisioning's
    server span of `method`, once it holds every expected (service, span name) pair
    (spans are written as they end, a server's possibly after its client got the
    answer)."""
    found: list[Span] = []
    for _ in range(100):
        spans = read_spans(path)
        roots = [
            s
            for s in spans
            if s["trace_id"] not in before
            and s["service"] == "provisioning"
            and s["name"] == PROVISIONING + method
            and s["parent_id"] is None
        ]
        if len(roots) == 1:
            found = [s for s in spans if s["trace_id"] == roots[0]["trace_id"]]
            if expected <= {(str(s["service"]), str(s["name"])) for s in found}:
                return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"incomplete trace for {method}: {found}")


def assert_linked(trace: list[Span]) -> None:
    """One root; every other span's parent is a span of the same trace; every server
    span in another service has its caller's client span (same name) as parent."""
    by_id = {s["span_id"]: s for s in trace}
    assert len(by_id) == len(trace)
    assert [s for s in trace if s["parent_id"] is None] == [trace_root(trace)]
    for span in trace:
        if span["parent_id"] is None:
            continue
        parent = by_id.get(span["parent_id"])
        assert parent is not None, f"{span} has a parent outside the trace"
        if span["service"] != parent["service"]:  # a hop: client span -> server span
            assert span["name"] == parent["name"], (parent, span)


def trace_root(trace: list[Span]) -> Span:
    (root,) = [s for s in trace if s["parent_id"] is None]
    return root


def hops(trace: list[Span]) -> set[tuple[str, str, str]]:
    """(caller service, callee service, method) for every cross-service call."""
    by_id = {s["span_id"]: s for s in trace}
    found = set()
    for span in trace:
        parent = by_id.get(span["parent_id"] or "")
        if parent is not None and parent["service"] != span["service"]:
            found.add(
                (str(parent["service"]), str(span["service"]), str(span["name"]).split("/")[-1])
            )
    return found


async def test_create_user_is_one_trace_across_provisioning_and_pool(
    traced: tuple[Processes, Path],
) -> None:
    running, spans = traced
    tenant = Tenant(running.platform, Company(running.platform.pool, rid(), {}))
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "connect", 1)

    before = trace_ids(spans)
    await tenant.user("hq", "Ann")

    trace = await trace_of(
        spans,
        "CreateUser",
        {(svc, POOL + m) for svc in ("provisioning", "pool") for m in ("Reserve", "Commit")},
        before,
    )
    assert_linked(trace)
    assert {s["service"] for s in trace} == {"provisioning", "pool"}
    # Two-phase: the unit is held, the user written, then the hold committed.
    assert hops(trace) == {("provisioning", "pool", "Reserve"), ("provisioning", "pool", "Commit")}
    pool_spans = [s for s in trace if s["service"] == "pool" and is_rpc(s)]
    assert sorted(str(s["name"]) for s in pool_spans) == [POOL + "Commit", POOL + "Reserve"]
    # The pool's database statements are spans of the trace too, under its server spans.
    by_id = {s["span_id"]: s for s in trace}
    statements = [s for s in trace if s["service"] == "pool" and not is_rpc(s)]
    assert statements
    for statement in statements:
        assert any(a in pool_spans for a in ancestors(statement, by_id)), statement
    for pool_span in pool_spans:
        (client,) = [s for s in trace if s["span_id"] == pool_span["parent_id"]]
        assert client["parent_id"] == trace_root(trace)["span_id"]


async def test_a_purchase_is_one_trace_across_provisioning_billing_and_pool(
    traced: tuple[Processes, Path],
) -> None:
    running, spans = traced
    shop = Shop(running.billing_stub, running.platform.pool)
    await shop.plan("hq", "USD", {"connect": 1000}, datetime.now(UTC) - timedelta(days=1))
    tenant = Tenant(running.platform, Company(running.platform.pool, shop.company_id, shop.offices))

    before = trace_ids(spans)
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

    trace = await trace_of(
        spans,
        "CreateUser",
        {
            ("billing", BILLING + "PurchaseLicenses"),
            ("pool", POOL + "AddUnits"),
            ("pool", POOL + "Reserve"),
            ("pool", POOL + "Commit"),
        },
        before,
    )
    assert_linked(trace)
    assert {s["service"] for s in trace} == {"provisioning", "pool", "billing"}
    found = hops(trace)
    assert ("provisioning", "billing", "PurchaseLicenses") in found
    reserves = [s for s in trace if s["name"] == POOL + "Reserve" and s["service"] == "pool"]
    assert len(reserves) == 2  # refused (the shortfall), then after the purchase
    assert ("provisioning", "pool", "Reserve") in found
    assert ("provisioning", "pool", "Commit") in found
    assert ("billing", "pool", "AddUnits") in found  # the new unit
    # Billing's server span hangs under provisioning's server span (through its client).
    (billing_server,) = [
        s for s in trace if s["service"] == "billing" and s["name"] == BILLING + "PurchaseLicenses"
    ]
    by_id = {s["span_id"]: s for s in trace}
    client = by_id[billing_server["parent_id"]]
    assert client["service"] == "provisioning"
    assert client["parent_id"] == trace_root(trace)["span_id"]
    # Pool calls billing made are children of billing's server span (through clients).
    for span in trace:
        if span["service"] == "billing" and span is not billing_server:
            assert billing_server in ancestors(span, by_id), span


def is_rpc(span: Span) -> bool:
    """A call's span ("/pkg.Service/Method"), not a database statement's."""
    return str(span["name"]).startswith("/")


def ancestors(span: Span, by_id: dict[str | None, Span]) -> list[Span]:
    found = []
    while span["parent_id"] is not None:
        span = by_id[span["parent_id"]]
        found.append(span)
    return found
