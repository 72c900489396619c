"""Invoices over random interleavings on the SQL path (real gRPC, billing and pool on
PostgreSQL): purchases, assignments, returns, pool enablement, removals, restores, the
passing of time across the offices' different cycle anchors, and closes of any period.
After each close: a period is refused exactly while it has not ended for every office's
plan; every live unit is on exactly one invoice line, pooled units on the oldest active
plan of their currency; exactly the removals of the period's cycles (or earlier ones) are
terminated, each at or after its removal time, by the pool's own record of when it was
scheduled; closing the period again returns the same invoice. After closing every period:
every purchase charge is on exactly one invoice, the first made after it completed for the
period before its own or a later one; on the one before its own (an office with an
earlier anchor bought in its next cycle before the company's close, so its new units are
on that invoice's lines for the cycle the charge prorates) it is billed in advance, with a
credit of that full cycle: per new unit the customer pays its prorated amount exactly."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from libs.common.clock import FakeClock
from libs.common.error_status import error_info
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.billing.v1 import billing_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp
from tests.support import cycles
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

PERIODS = ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04"]
START = datetime(2026, 1, 15, 12, tzinfo=UTC)
# Waits stop here: every office is still in a cycle of a period in PERIODS.
LAST_HOUR = datetime(2026, 4, 27, tzinfo=UTC)
EVERY_PERIOD_ENDED = datetime(2026, 6, 1, tzinfo=UTC)

offices = st.sampled_from(sorted(OFFICES))
operations = st.one_of(
    st.tuples(st.just("buy"), offices, st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("assign"), offices, st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("return"), offices, st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("remove"), offices, st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("enable"), st.sampled_from(["USD", "EUR"]), st.just(0), st.just(0)),
    st.tuples(st.just("wait"), st.just("a"), st.just(0), st.integers(1, 40)),
    st.tuples(st.just("days"), st.just("a"), st.just(0), st.integers(1, 25)),
    st.tuples(st.just("close"), st.sampled_from(PERIODS), st.just(0), st.just(0)),
    st.tuples(st.just("close_next"), st.just(""), st.just(0), st.just(0)),
)

EXPECTED_FAILURES = {"NO_LICENSE_AVAILABLE", "NOT_ENOUGH_SPARE", "POOL_ALREADY_ENABLED"}


def period_end(period: str) -> datetime:
    return cycles.period_end(period, STARTS.values())


def following(period: str) -> str:
    return (datetime.strptime(period, "%Y-%m") + timedelta(days=31)).strftime("%Y-%m")


def preceding(period: str) -> str:
    return (datetime.strptime(period, "%Y-%m") - timedelta(days=1)).strftime("%Y-%m")


@dataclass
class Run:
    shop: Shop
    clock: FakeClock
    seq: int = 0
    completed_at: dict[str, int] = field(default_factory=dict)  # purchase -> seq
    made: list[tuple[int, bpb.Invoice]] = field(default_factory=list)

    def invoice_of(self, period: str) -> bpb.Invoice | None:
        return next((i for _, i in self.made if i.period == period), None)

    def office_name(self, office_id: str) -> str:
        return next(n for n, o in self.shop.offices.items() if o == office_id)


async def apply(run: Run, op: tuple[str, str, int, int]) -> None:
    shop, clock = run.shop, run.clock
    kind, name, type_index, n = op
    if kind == "enable":
        await shop.enable(name)
        return
    if kind in ("wait", "days"):
        delta = timedelta(minutes=n) if kind == "wait" else timedelta(days=n)
        clock.set(min(clock.now() + delta, LAST_HOUR))
        return
    if kind == "close":
        await close(run, name)
        return
    if kind == "close_next":  # the earliest period without an invoice, as operators do
        await close(run, next((p for p in PERIODS if run.invoice_of(p) is None), PERIODS[0]))
        return
    currency = OFFICES[name]
    license_type = TYPES[currency][type_index % len(TYPES[currency])]
    if kind == "buy":
        bought = await shop.buy(name, license_type, n)
        run.completed_at[bought.purchase_id] = run.seq
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


async def close(run: Run, period: str) -> None:
    shop, now = run.shop, run.clock.now()
    before = run.invoice_of(period)
    expected = ""
    if before is None and period > now.strftime("%Y-%m"):
        expected = "PERIOD_NOT_STARTED"
    elif before is None and now < period_end(period):
        expected = "PERIOD_NOT_ENDED"

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
    # Each scheduled unit goes at the end of its office's cycle it was scheduled in.
    removal_at = {
        u.unit_id: cycles.cycle_at(
            STARTS[run.office_name(u.office_id)], u.update_time.ToDatetime(tzinfo=UTC)
        )[1]
        for u in live
        if u.state == ppb.UNIT_STATE_REMOVAL_SCHEDULED
    }

    refused: grpc.aio.AioRpcError | None = None
    try:
        invoice = await shop.close(period)
    except grpc.aio.AioRpcError as error:
        refused = error
    if refused is not None:
        assert before is None
        assert reason_of(refused) == expected, (period, now)
        if expected == "PERIOD_NOT_ENDED":
            info = error_info(refused)
            assert info is not None
            assert info.metadata["end_time"] == period_end(period).isoformat()
        return
    assert expected == "", (period, now)
    if before is not None:
        assert invoice == before
        return
    run.made.append((run.seq, invoice))
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
            assert line.plan_id == shop.plans[run.office_name(line.office_id)]
            office_lines[(line.office_id, line.license_type)] += line.units
    assert office_lines == by_office
    assert pool_lines == by_pool

    ending = set()
    for unit_id, at in removal_at.items():
        office = run.office_name(next(u.office_id for u in live if u.unit_id == unit_id))
        own = cycles.cycle_in(STARTS[office], period)
        if own is not None and at <= own[1]:
            assert at <= now
            ending.add(unit_id)
    assert invoice.terminated_units == len(ending)
    states = {u.unit_id: u.state for u in await shop.units()}
    for unit_id in removal_at:
        ended = states[unit_id] == ppb.UNIT_STATE_TERMINATED
        assert ended == (unit_id in ending), unit_id

    again = await shop.close(period)
    assert again == invoice
    fetched = await shop.billing.GetInvoice(
        bpb.GetInvoiceRequest(company_id=shop.company_id, invoice_id=invoice.invoice_id)
    )
    assert fetched.invoice == invoice


async def scenario(shop: Shop, clock: FakeClock, ops: list[tuple[str, str, int, int]]) -> None:
    clock.set(START)  # a new company each time: its own time line
    run = Run(shop, clock)
    for name, currency in OFFICES.items():
        await shop.plan(name, currency, PRICES[currency], STARTS[name], primary=name == "a")
    for op in ops:
        run.seq += 1
        failure = ""
        try:
            await apply(run, op)
        except grpc.aio.AioRpcError as error:
            failure = reason_of(error)
        assert not failure or failure in EXPECTED_FAILURES, (op, failure)

    clock.set(EVERY_PERIOD_ENDED)
    for period in PERIODS:
        run.seq += 1
        await close(run, period)
    carried_by: dict[str, list[tuple[bpb.Invoice, bpb.PurchaseCharge]]] = {}
    for _, invoice in run.made:
        for charge in invoice.purchase_charges:
            assert charge.period <= following(invoice.period)  # the next one: in advance
            assert charge.billed_in_advance == (charge.period > invoice.period)
            carried_by.setdefault(charge.purchase_id, []).append((invoice, charge))
    charged = {p.purchase_id: p for p in await shop.purchases() if p.new_units}
    assert set(carried_by) == set(charged)  # none missed
    for purchase_id, bought in charged.items():
        ((carrier, charge),) = carried_by[purchase_id]  # none twice
        after = run.completed_at[purchase_id]
        first = next(
            i for seq, i in run.made if seq > after and i.period >= preceding(bought.period)
        )
        assert carrier.invoice_id == first.invoice_id
        assert charge.period == bought.period
        currency = bought.unit_price.currency_code
        price, prorated = bought.unit_price.amount_minor, bought.amount.amount_minor
        if carrier.period < bought.period:  # its units are on the carrier's lines
            assert charge.billed_in_advance
            assert charge.adjustment == bpb.Money(
                currency_code=currency, amount_minor=-bought.new_units * price
            )
            assert charge.amount.amount_minor == prorated - bought.new_units * price
            # Line and charge together bill each new unit its prorated amount.
            billed = [
                line
                for line in carrier.lines
                if (line.currency, line.license_type) == (currency, bought.license_type)
            ]
            assert sum(line.units for line in billed) >= bought.new_units
            assert {line.unit_price.amount_minor for line in billed} == {price}
        else:
            assert not charge.billed_in_advance
            assert not charge.HasField("adjustment")
            assert charge.amount == bought.amount


async def test_every_charge_and_every_live_unit_is_billed_exactly_once(
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
    @example(  # b (Jan 1) and c (Jan 2) buy in their February cycles before January's
        # close (a's January cycle runs to Feb 28): billed in advance on January's invoice
        ops=[
            ("days", "a", 0, 20),  # Feb 4
            ("buy", "b", 0, 2),
            ("buy", "c", 0, 1),
            ("buy", "a", 1, 1),  # a's January cycle: January's own charge
            ("days", "a", 0, 25),  # Mar 1
            ("close_next", "", 0, 0),  # 2025-12
            ("close_next", "", 0, 0),  # 2026-01: carries b's and c's charges in advance
            ("buy", "b", 0, 1),  # b's March cycle: February's invoice carries it in advance
            ("close", "2026-02", 0, 0),  # refused: a's February cycle runs to Mar 30
        ]
    )
    @example(  # removals in each office's own cycle; early, late and out-of-order closes
        ops=[
            ("buy", "b", 0, 3),
            ("buy", "a", 0, 2),
            ("remove", "b", 0, 1),
            ("days", "a", 0, 20),
            ("remove", "b", 0, 1),  # b's February cycle: not ended by January's close
            ("remove", "a", 0, 1),  # a's cycle of January (Jan 30 to Feb 28)
            ("close", "2026-01", 0, 0),  # refused: a's cycle runs to Feb 28
            ("buy", "c", 0, 1),
            ("days", "a", 0, 25),
            ("close", "2026-01", 0, 0),
            ("close_next", "", 0, 0),
            ("close", "2026-02", 0, 0),  # refused: a's February cycle runs to Mar 30
            ("buy", "d", 0, 2),
        ]
    )
    @given(ops=st.lists(operations, min_size=1, max_size=16))
    def check(ops: list[Any]) -> None:
        wait(scenario(Shop(billing_stub, pool_service[1]), clock, ops))

    await asyncio.to_thread(check)
