"""Invoice exactly-once, property-based: whatever the sequence of purchases, assignments,
returns, pool enablement and removals, every live unit is on exactly one invoice line,
pooled units are on the oldest active plan of their currency, and closing the period
again returns the same invoice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.common.clock import FakeClock
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.billing.v1 import billing_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp
from tests.support.billing import Shop
from tests.support.pool import reason_of

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]
T = TypeVar("T")

OFFICES = {"a": "USD", "b": "USD", "c": "EUR", "d": "EUR"}
STARTS = {
    "a": datetime(2025, 11, 30, tzinfo=UTC),  # the oldest USD plan
    "b": datetime(2026, 1, 1, tzinfo=UTC),
    "c": datetime(2026, 1, 2, tzinfo=UTC),  # the oldest EUR plan
    "d": datetime(2026, 1, 5, tzinfo=UTC),
}
PRICES = {"USD": {"connect": 1000, "fax": 300, "agentic_ai": 5000}, "EUR": {"connect": 900}}
TYPES = {"USD": ["connect", "fax", "agentic_ai"], "EUR": ["connect"]}

offices = st.sampled_from(sorted(OFFICES))
operations = st.one_of(
    st.tuples(st.just("buy"), offices, st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("assign"), offices, st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("return"), offices, st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("remove"), offices, st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("enable"), st.sampled_from(["USD", "EUR"]), st.just(0), st.just(0)),
    st.tuples(st.just("wait"), st.just("a"), st.just(0), st.integers(1, 40)),
)

EXPECTED_FAILURES = {"NO_LICENSE_AVAILABLE", "NOT_ENOUGH_SPARE", "POOL_ALREADY_ENABLED"}


async def apply(shop: Shop, clock: FakeClock, op: tuple[str, str, int, int]) -> None:
    kind, name, type_index, n = op
    if kind == "enable":
        await shop.enable(name)
        return
    if kind == "wait":
        clock.advance(minutes=n)
        return
    currency = OFFICES[name]
    license_type = TYPES[currency][type_index % len(TYPES[currency])]
    if kind == "buy":
        await shop.buy(name, license_type, n)
    elif kind == "assign":
        await shop.acquire(name, license_type, n)
    elif kind == "remove":
        await shop.remove(name, license_type, n)
    elif kind == "return":
        assigned = await shop.units(
            office_id=shop.offices[name], license_type=license_type, state=ppb.UNIT_STATE_ASSIGNED
        )
        if assigned:
            await shop.give_back([u.unit_id for u in assigned[:n]])


async def scenario(shop: Shop, clock: FakeClock, ops: list[tuple[str, str, int, int]]) -> None:
    for name, currency in OFFICES.items():
        await shop.plan(name, currency, PRICES[currency], STARTS[name], primary=name == "a")
    for op in ops:
        failure = ""
        try:
            await apply(shop, clock, op)
        except grpc.aio.AioRpcError as error:
            failure = reason_of(error)
        assert not failure or failure in EXPECTED_FAILURES, (op, failure)

    # What the pool holds, counted independently of billing.
    live = [u for u in await shop.units() if u.state != ppb.UNIT_STATE_TERMINATED]
    by_office: Counter[tuple[str, str]] = Counter()
    by_pool: Counter[tuple[str, str]] = Counter()
    for unit in live:
        pooled = unit.state == ppb.UNIT_STATE_POOLED or (
            unit.state == ppb.UNIT_STATE_HELD and unit.held_from_state == ppb.UNIT_STATE_POOLED
        )
        if pooled:
            by_pool[(unit.currency, unit.license_type)] += 1
        else:
            by_office[(unit.office_id, unit.license_type)] += 1
    scheduled = sum(1 for u in live if u.state == ppb.UNIT_STATE_REMOVAL_SCHEDULED)

    invoice = await shop.close("2026-01")
    assert invoice.reconciliation == bpb.Reconciliation(
        live_units=len(live), billed_units=len(live), balanced=True
    )
    office_lines: Counter[tuple[str, str]] = Counter()
    pool_lines: Counter[tuple[str, str]] = Counter()
    oldest = {"USD": shop.plans["a"], "EUR": shop.plans["c"]}
    for line in invoice.lines:
        assert line.units > 0
        assert line.amount.amount_minor == line.units * line.unit_price.amount_minor
        if line.kind == bpb.LINE_KIND_POOLED_UNITS:
            assert line.plan_id == oldest[line.currency]
            pool_lines[(line.currency, line.license_type)] += line.units
        else:
            name = next(n for n, o in shop.offices.items() if o == line.office_id)
            assert line.plan_id == shop.plans[name]
            office_lines[(line.office_id, line.license_type)] += line.units
    assert office_lines == by_office
    assert pool_lines == by_pool
    assert invoice.terminated_units == scheduled
    charges = sum(c.amount.amount_minor for c in invoice.purchase_charges)
    # A purchase's charge belongs to the period its plan cycle started in (a's cycle
    # started Dec 30, so a's purchases fall in 2025-12).
    bought = sum(p.amount.amount_minor for p in await shop.purchases() if p.period == "2026-01")
    assert charges == bought

    again = await shop.close("2026-01")
    assert again == invoice
    fetched = await shop.billing.GetInvoice(
        bpb.GetInvoiceRequest(company_id=shop.company_id, invoice_id=invoice.invoice_id)
    )
    assert fetched.invoice == invoice


async def test_every_live_unit_is_billed_exactly_once(
    billing_stub: billing_pb2_grpc.BillingServiceStub,
    pool_service: tuple[PoolApp, pool_pb2_grpc.PoolServiceStub],
    clock: FakeClock,
) -> None:
    loop = asyncio.get_running_loop()

    def wait(coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)  # type: ignore[arg-type]

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(ops=st.lists(operations, min_size=1, max_size=14))
    def check(ops: list[Any]) -> None:
        wait(scenario(Shop(billing_stub, pool_service[1]), clock, ops))

    await asyncio.to_thread(check)
