"""Invoices over random interleavings of purchases (some stopped by a pool outage and
retried or recovered later), removals, restores, returns to the pool, the passing of time
and closes of any period, on the in-memory unit of work and pool (docs/product.md,
"Invoices"). Three offices bill on different anchors. After every close, and after
closing every period at the end:

- a close is refused exactly when its period has not started, has not ended for every
  office's plan, or has purchases under way; closing an invoiced period answers its invoice;
- every live unit is on exactly one line of the invoice of each period (counted from the
  pool's units, independently of billing);
- a close terminates exactly the units whose office's cycle of removal belongs to its
  period or an earlier one, never a unit before its removal time;
- every charge is on exactly one invoice: the first one made after the charge completed
  for the period before its own or a later one. On the invoice of the period before its
  own (an office with an earlier anchor bought in its next cycle before the company's
  close) it is billed in advance: its new units are on that invoice's lines for the whole
  cycle it prorates, so it credits that cycle and the customer pays, per unit, exactly
  its prorated amount for the cycle it was bought in (full cycles after, on the lines).
  Otherwise it is its own period's, unless that was made before the charge completed or
  a later period was closed first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from libs.common.clock import FakeClock
from libs.common.errors import DomainError, Unavailable
from services.billing.domain.model import Invoice, LineKind, PurchaseState
from services.billing.domain.purchase import Step
from services.billing.use_cases import invoices, removals
from services.billing.use_cases.purchases import PurchaseCommand
from tests.support import cycles
from tests.unit.billing.conftest import Shop, shop_on

ANCHORS = {
    "a": datetime(2026, 1, 1, tzinfo=UTC),
    "b": datetime(2026, 1, 10, 9, 30, tzinfo=UTC),
    "c": datetime(2025, 12, 31, tzinfo=UTC),  # clamped: Jan 31, Feb 28, Mar 31, ...
}
T = TypeVar("T")
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LAST_HOUR = datetime(2026, 5, 31, 23, tzinfo=UTC)
PERIODS = ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]
# The pool calls an outage stops: before the pivot (the purchase fails, for a retry), or
# after it (the purchase stays under way until a retry or the recovery finishes it).
OUTAGES = {
    "before_pivot": ("restore_from_removal", "reserve"),
    "after_pivot": ("commit", "add_units"),
}

offices = st.sampled_from(sorted(ANCHORS))
operations = st.one_of(
    st.tuples(st.just("buy"), offices, st.integers(1, 5)),
    st.tuples(st.just("buy_down"), offices, st.integers(1, 5), st.sampled_from(sorted(OUTAGES))),
    st.tuples(st.just("retry")),
    st.tuples(st.just("recover")),
    st.tuples(st.just("remove"), offices, st.integers(1, 2)),
    st.tuples(st.just("return"), offices, st.integers(1, 2)),
    st.tuples(st.just("grace_over")),
    st.tuples(st.just("wait"), st.integers(1, 20 * 24)),
    st.tuples(st.just("wait"), st.integers(20 * 24, 40 * 24)),
    st.tuples(st.just("close"), st.sampled_from(PERIODS[:5])),
    st.tuples(st.just("close_next")),
    st.tuples(st.just("close_next")),
)


def period_end(period: str) -> datetime:
    return cycles.period_end(period, ANCHORS.values())


def following(period: str) -> str:
    return (datetime.strptime(period, "%Y-%m") + timedelta(days=31)).strftime("%Y-%m")


def preceding(period: str) -> str:
    return (datetime.strptime(period, "%Y-%m") - timedelta(days=1)).strftime("%Y-%m")


@dataclass
class World:
    """What the test knows, kept apart from billing's own bookkeeping."""

    shop: Shop
    seq: int = 0
    unsettled: list[PurchaseCommand] = field(default_factory=list)
    completed_at: dict[uuid.UUID, int] = field(default_factory=dict)  # purchase -> seq
    made: list[tuple[int, Invoice]] = field(default_factory=list)  # (seq, invoice)

    @property
    def now(self) -> datetime:
        return self.shop.clock.now()

    def office_of(self, office_id: uuid.UUID | None) -> str:
        return next(name for name, o in self.shop.offices.items() if o == office_id)

    def live_counts(self) -> tuple[Counter[tuple[uuid.UUID, str]], Counter[str]]:
        by_office: Counter[tuple[uuid.UUID, str]] = Counter()
        by_pool: Counter[str] = Counter()
        for unit in self.shop.pool.units.values():
            if unit.state == "TERMINATED":
                continue
            if unit.state == "POOLED" or unit.held_from == "POOLED":
                by_pool[unit.license_type] += 1
            else:
                assert unit.office_id is not None
                by_office[(unit.office_id, unit.license_type)] += 1
        return by_office, by_pool

    def removal_times(self) -> dict[str, datetime]:
        """Each scheduled unit and when it goes: the end of its office's cycle in which
        it was scheduled (by a removal, or again by the undo of a purchase)."""
        return {
            unit_id: cycles.cycle_at(ANCHORS[self.office_of(unit.office_id)], unit.changed_at)[1]
            for unit_id, unit in self.shop.pool.units.items()
            if unit.state == "REMOVAL_SCHEDULED" and unit.changed_at is not None
        }

    def sync(self) -> None:
        """Learns what the last step settled: completed charges."""
        for stored in self.shop.uow.state.purchases.values():
            bought = stored.purchase
            if bought.state is PurchaseState.COMPLETED and bought.purchase_id not in (
                self.completed_at
            ):
                self.completed_at[bought.purchase_id] = self.seq
        self.unsettled = [c for c in self.unsettled if not self._completed(c)]

    def _completed(self, command: PurchaseCommand) -> bool:
        return any(
            s.purchase.request_id == command.request_id
            and s.purchase.state is PurchaseState.COMPLETED
            for s in self.shop.uow.state.purchases.values()
        )

    def pending_in(self, period: str) -> bool:
        return any(
            s.purchase.state is PurchaseState.PENDING
            and s.purchase.cycle.start.strftime("%Y-%m") == period
            for s in self.shop.uow.state.purchases.values()
        )

    def adding_in(self, period: str) -> bool:
        """A purchase of the period is adding its new units (stopped by an outage): the
        close of the period before cannot tell whether its snapshot holds them."""
        return any(
            s.purchase.state is PurchaseState.PENDING
            and s.purchase.step is Step.ADDING
            and s.purchase.cycle.start.strftime("%Y-%m") == period
            for s in self.shop.uow.state.purchases.values()
        )

    def invoice_of(self, period: str) -> Invoice | None:
        return next((i for _, i in self.made if i.period == period), None)


async def reason_of(call: Awaitable[T]) -> tuple[T | None, str]:
    """What a call answered, or the reason it was refused for."""
    try:
        return await call, ""
    except DomainError as error:
        return None, error.reason


async def buy(world: World, command: PurchaseCommand) -> None:
    _, reason = await reason_of(world.shop.saga.purchase(command))
    if reason:
        assert reason == "POOL_UNAVAILABLE"
        world.unsettled.append(command)


async def close(world: World, period: str) -> None:
    shop, now = world.shop, world.now
    before = world.invoice_of(period)
    if before is None:
        if period > now.strftime("%Y-%m"):
            expected = "PERIOD_NOT_STARTED"
        elif now < period_end(period):
            expected = "PERIOD_NOT_ENDED"
        elif world.pending_in(period):
            expected = "PURCHASES_IN_PROGRESS"
        elif world.adding_in(following(period)):
            event("a close waits for a next-period purchase adding its units")
            expected = "PURCHASES_IN_PROGRESS"
        else:
            expected = ""
    by_office, by_pool = world.live_counts()
    scheduled = world.removal_times()
    invoice, reason = await reason_of(
        invoices.close_cycle(shop.company_id, period, shop.uow, shop.pool)
    )
    if invoice is None:
        assert before is None
        assert reason == expected, (period, now)
        return
    if before is not None:
        assert invoice == before
        assert world.removal_times() == scheduled
        return
    assert expected == "", (period, now)
    world.made.append((world.seq, invoice))
    # Every live unit is on exactly one line.
    assert invoice.reconciliation.balanced
    assert invoice.reconciliation.live_units == sum(by_office.values()) + sum(by_pool.values())
    office_lines: Counter[tuple[uuid.UUID, str]] = Counter()
    pool_lines: Counter[str] = Counter()
    for line in invoice.lines:
        if line.kind is LineKind.POOLED_UNITS:
            assert line.office_id == shop.offices["c"]  # the oldest active plan pays
            pool_lines[line.license_type] += line.units
        else:
            assert line.office_id is not None
            office_lines[(line.office_id, line.license_type)] += line.units
    assert office_lines == by_office
    assert pool_lines == by_pool
    # Exactly the removals of the period's cycles (or earlier) end, none before its time.
    ending = set()
    for unit_id, removal_at in scheduled.items():
        office = world.office_of(shop.pool.units[unit_id].office_id)
        own = cycles.cycle_in(ANCHORS[office], period)
        if own is not None and removal_at <= own[1]:
            ending.add(unit_id)
    for unit_id in scheduled:
        state = shop.pool.units[unit_id].state
        assert state == ("TERMINATED" if unit_id in ending else "REMOVAL_SCHEDULED"), unit_id
        if unit_id in ending:
            assert scheduled[unit_id] <= now
    assert invoice.terminated_units == len(ending)
    if scheduled.keys() - ending:
        event("a close left a later cycle's removal scheduled")
    world.sync()


async def apply(world: World, op: tuple[Any, ...]) -> None:
    shop, kind = world.shop, op[0]
    if kind == "buy":
        await buy(world, shop.command(op[1], op[2]))
    elif kind == "buy_down":
        for method in OUTAGES[op[3]]:
            shop.pool.refuse(method, Unavailable("POOL_UNAVAILABLE", "down"))
        await buy(world, shop.command(op[1], op[2]))
        shop.pool.forgive()
    elif kind == "retry" and world.unsettled:
        await buy(world, world.unsettled.pop(0))
    elif kind == "recover":
        shop.uow.state.end_leases()
        await shop.saga.recover_interrupted()
    elif kind == "remove":
        command = removals.ScheduleRemoval(
            shop.company_id, str(uuid.uuid4()), shop.offices[op[1]], "connect", op[2]
        )
        removal, reason = await reason_of(removals.schedule_removal(command, shop.uow, shop.pool))
        if removal is None:
            assert reason == "NOT_ENOUGH_SPARE"
            return
        assert removal.removal_at == cycles.cycle_at(ANCHORS[op[1]], world.now)[1]
        assert set(removal.unit_ids) <= set(world.removal_times())
    elif kind == "return":
        office_id = shop.offices[op[1]]
        spare = sorted(
            u
            for u, unit in shop.pool.units.items()
            if unit.office_id == office_id and unit.state == "SPARE"
        )
        for unit_id in spare[: op[2]]:
            unit = shop.pool.units[unit_id]
            unit.state, unit.office_id, unit.in_grace_of = "POOLED", None, office_id
    elif kind == "grace_over":
        for unit in shop.pool.units.values():
            unit.in_grace_of = None
    elif kind == "wait":
        # Up to the last hour where every office is still in a cycle of May at the latest.
        shop.clock.set(min(world.now + timedelta(hours=op[1]), LAST_HOUR))
    elif kind == "close":
        await close(world, op[1])
    elif kind == "close_next":  # the earliest period without an invoice, as operators do
        await close(world, next((p for p in PERIODS if world.invoice_of(p) is None), PERIODS[0]))


async def settle_and_close_everything(world: World) -> None:
    shop = world.shop
    shop.uow.state.end_leases()
    await shop.saga.recover_interrupted()
    for command in list(world.unsettled):
        world.unsettled.remove(command)
        await buy(world, command)
    world.seq += 1
    world.sync()
    assert not world.unsettled
    shop.clock.set(datetime(2026, 7, 1, tzinfo=UTC))  # every period of PERIODS has ended
    for period in PERIODS:
        world.seq += 1
        await close(world, period)
        assert world.invoice_of(period) is not None


async def scenario(ops: list[tuple[Any, ...]]) -> None:
    shop = shop_on(FakeClock(START))
    for name, anchor in ANCHORS.items():
        await shop.plan(name, start=anchor)
    shop.enable()
    for name in ANCHORS:  # something to restore and to take from the pool from the start
        shop.add(name, 2)
        shop.add(name, 1, state="REMOVAL_SCHEDULED")
    shop.pooled(2)
    world = World(shop)
    for op in ops:
        world.seq += 1
        await apply(world, op)
        world.sync()
    await settle_and_close_everything(world)

    carried_by: dict[uuid.UUID, list[Invoice]] = {}
    for _, invoice in world.made:
        for charge in invoice.charges:
            assert charge.period <= following(invoice.period)  # the next one: in advance
            assert charge.billed_in_advance == (charge.period > invoice.period)
            carried_by.setdefault(charge.purchase_id, []).append(invoice)
    charged = {
        s.purchase.purchase_id: s.purchase
        for s in shop.uow.state.purchases.values()
        if s.purchase.state is PurchaseState.COMPLETED and s.purchase.split.new  # type: ignore[union-attr]
    }
    assert set(carried_by) == set(charged)  # none missed
    for purchase_id, bought in charged.items():
        (carrier,) = carried_by[purchase_id]  # none twice
        (charge,) = [c for c in carrier.charges if c.purchase_id == purchase_id]
        new = bought.split.new  # type: ignore[union-attr]
        own = bought.cycle.start.strftime("%Y-%m")
        first = next(
            i
            for seq, i in world.made
            if seq > world.completed_at[purchase_id] and i.period >= preceding(own)
        )
        assert carrier.invoice_id == first.invoice_id
        assert charge.new_units == new
        if carrier.period < own:  # its units are on the carrier's lines for its cycle
            event("a charge billed in advance")
            assert carrier.period == preceding(own)
            assert charge.billed_in_advance
            assert charge.adjustment == -new * bought.unit_price
            assert charge.amount == bought.amount - new * bought.unit_price
            # Line and charge together bill each new unit its prorated amount.
            billed = [line for line in carrier.lines if line.license_type == bought.license_type]
            assert sum(line.units for line in billed) >= new
            assert {line.unit_price for line in billed} == {bought.unit_price}
        else:
            assert not charge.billed_in_advance
            assert (charge.amount, charge.adjustment) == (bought.amount, 0)
        if carrier.period > own:
            event("a charge on a later period's invoice")


@example(  # a and b buy in their February cycles before January's close (c's runs to
    # Feb 28): billed in advance on January's invoice, not again on February's
    ops=[
        ("wait", 500),  # Feb 4: a's February cycle
        ("buy", "a", 3),
        ("wait", 300),  # Feb 17: b's February cycle
        ("buy", "b", 5),
        ("wait", 300),  # Mar 1
        ("close_next",),
        ("close_next",),
        ("buy", "c", 2),  # c's March cycle, after February's close (c's ran to Mar 31)
    ]
)
@example(  # a purchase of a's February cycle stopped while adding its units holds
    # January's close until it is recovered, then January carries it in advance
    ops=[
        ("buy", "b", 3),  # the pool's two units: a's next purchase needs no hold
        ("wait", 500),
        ("buy_down", "a", 4, "after_pivot"),
        ("wait", 600),
        ("close", "2026-01"),
        ("recover",),
        ("close", "2026-01"),
    ]
)
@example(  # a purchase failed before the pivot, retried after its period was invoiced
    ops=[
        ("buy_down", "a", 5, "before_pivot"),
        ("wait", 1000),
        ("wait", 500),
        ("close_next",),
        ("close_next",),
    ]
)
@example(  # a purchase stopped after the pivot holds its period's close until recovered
    ops=[("buy_down", "b", 4, "after_pivot"), ("wait", 1500), ("close", "2026-01"), ("recover",)]
)
@example(  # removals in each office's own cycle, closes in and out of order
    ops=[
        ("remove", "a", 1),
        ("wait", 500),
        ("remove", "a", 1),
        ("remove", "b", 1),
        ("remove", "c", 1),
        ("wait", 600),
        ("close", "2026-02"),
        ("close", "2026-01"),
        ("buy", "a", 3),
    ]
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(operations, min_size=1, max_size=30))
def test_every_charge_is_on_one_invoice_and_every_live_unit_billed_once_per_cycle(
    ops: list[tuple[Any, ...]],
) -> None:
    asyncio.run(scenario(ops))
