"""Invoices from one pool snapshot (docs/product.md, "Invoices"): who pays for which unit,
exactly once.

- Units an office owns (assigned, spare, scheduled for removal, held from spare) are billed
  to the office's plan.
- Units resting in a pool (and held from it) are billed to the oldest active plan of
  their currency.
- The prorated purchase charges of the period are added, and each office's credit
  overage of its credit period that starts in the period's month, at face value on the
  office's plan.
- A charge of the next period whose new units were live at the snapshot is billed in
  advance: the lines bill those units the full cycle they were bought in, so the charge
  comes with a credit for the part of that cycle before the purchase (`in_advance`).
- A line no price applies to (the paying plan has none for the type, or there is no
  paying plan) is billed at 0 and flagged unpriced; the reconciliation counts its units.

The reconciliation proves each live unit is on exactly one line: the snapshot's lines are
keyed by (office, type) and (currency, type), each key gives exactly one invoice line, and
the units on the lines add up to the snapshot's live units.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from services.billing.domain.model import (
    CreditOverage,
    InvoiceLine,
    LineKind,
    PeriodOverage,
    Plan,
    PurchaseCharge,
    Reconciliation,
    Snapshot,
)
from services.billing.domain.parity import oldest_active


def plan_of_office(plans: Sequence[Plan], office_id: uuid.UUID) -> Plan | None:
    """The office's active plan; else its latest plan (a deactivated office still pays
    for the units it holds)."""
    own = [p for p in plans if p.office_id == office_id]
    active = [p for p in own if p.active]
    if active:
        return active[0]
    return max(own, key=lambda p: (p.updated_at, str(p.plan_id)), default=None)


def _price(plan: Plan | None, license_type: str) -> tuple[int, bool]:
    """(unit price, unpriced): no plan, or no price on it, is unpriced (billed at 0)."""
    price = plan.price_of(license_type) if plan else None
    return (0, True) if price is None else (price, False)


def paying_plans(plans: Sequence[Plan]) -> list[Plan]:
    """The plan each office pays on (`plan_of_office`), one per office."""
    offices = sorted({p.office_id for p in plans}, key=str)
    return [plan for office in offices if (plan := plan_of_office(plans, office)) is not None]


def lines(snapshot: Snapshot, plans: Sequence[Plan]) -> list[InvoiceLine]:
    result = []
    for counts in snapshot.offices:
        plan = plan_of_office(plans, counts.office_id)
        price, unpriced = _price(plan, counts.license_type)
        result.append(
            InvoiceLine(
                kind=LineKind.OFFICE_UNITS,
                office_id=counts.office_id,
                plan_id=plan.plan_id if plan else None,
                currency=counts.currency,
                license_type=counts.license_type,
                assigned=counts.assigned,
                spare=counts.spare,
                removal_scheduled=counts.removal_scheduled,
                held=counts.held,
                pooled=0,
                unit_price=price,
                unpriced=unpriced,
            )
        )
    for pooled in snapshot.pools:
        payer = oldest_active(plans, pooled.currency)
        price, unpriced = _price(payer, pooled.license_type)
        result.append(
            InvoiceLine(
                kind=LineKind.POOLED_UNITS,
                office_id=payer.office_id if payer else None,
                plan_id=payer.plan_id if payer else None,
                currency=pooled.currency,
                license_type=pooled.license_type,
                assigned=0,
                spare=0,
                removal_scheduled=0,
                held=pooled.held,
                pooled=pooled.pooled,
                unit_price=price,
                unpriced=unpriced,
            )
        )
    return [line for line in result if line.units]


def reconcile(snapshot: Snapshot, billed: Sequence[InvoiceLine]) -> Reconciliation:
    """Units billed against live units; keys must be distinct (no unit billed twice)."""
    office_keys = [(s.office_id, s.currency, s.license_type) for s in snapshot.offices]
    pool_keys = [(s.currency, s.license_type) for s in snapshot.pools]
    distinct = len(set(office_keys)) == len(office_keys) and len(set(pool_keys)) == len(pool_keys)
    units = sum(line.units for line in billed)
    unpriced = sum(line.units for line in billed if line.unpriced)
    return Reconciliation(
        snapshot.live_units, units, distinct and units == snapshot.live_units, unpriced
    )


def overages(found: Sequence[PeriodOverage], plans: Sequence[Plan]) -> list[CreditOverage]:
    """Each office's credit overage, on the plan that pays for the office's units."""
    result = []
    for owed in sorted(found, key=lambda o: (str(o.office_id), o.period_start)):
        if owed.amount <= 0:
            continue
        plan = plan_of_office(plans, owed.office_id)
        result.append(
            CreditOverage(
                office_id=owed.office_id,
                plan_id=plan.plan_id if plan else None,
                currency=owed.currency,
                period_start=owed.period_start,
                period_end=owed.period_end,
                amount=owed.amount,
            )
        )
    return result


def in_advance(charge: PurchaseCharge) -> PurchaseCharge:
    """A charge whose new units the invoice's lines bill already, for the whole cycle the
    charge prorates: the customer owes the prorated amount only, so the charge credits
    the full cycle of its units (at the purchase's price; a pooled currency's prices are
    at parity) and line plus charge equal the prorated amount."""
    credit = -charge.new_units * charge.unit_price
    return replace(
        charge, amount=charge.prorated + credit, adjustment=credit, billed_in_advance=True
    )


def carried(period: str, claimed: Sequence[PurchaseCharge]) -> list[PurchaseCharge]:
    """The claimed charges as the invoice of `period` carries them: those of a later
    period (the next one, whose units the snapshot holds) billed in advance."""
    return [in_advance(c) if c.period > period else c for c in claimed]


def totals(
    billed: Sequence[InvoiceLine],
    charges: Sequence[PurchaseCharge],
    owed: Sequence[CreditOverage] = (),
) -> dict[str, int]:
    """The total per currency: unit lines plus purchase charges plus credit overage."""
    result: dict[str, int] = {}
    for currency, amount in (
        *((line.currency, line.amount) for line in billed),
        *((charge.currency, charge.amount) for charge in charges),
        *((o.currency, o.amount) for o in owed),
    ):
        result[currency] = result.get(currency, 0) + amount
    return dict(sorted(result.items()))
