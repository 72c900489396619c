"""Invoices from one pool snapshot (docs/product.md, "Invoices"): who pays for which unit,
exactly once.

- Units an office owns (assigned, spare, scheduled for removal, held from spare) are billed
  to the office's plan.
- Units resting in a pool (and held from it) are billed to the oldest active plan of
  their currency.
- The prorated purchase charges of the period are added.

The reconciliation proves each live unit is on exactly one line: the snapshot's lines are
keyed by (office, type) and (currency, type), each key gives exactly one invoice line, and
the units on the lines add up to the snapshot's live units.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.billing.domain.model import (
    InvoiceLine,
    LineKind,
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


def paying_plans(plans: Sequence[Plan]) -> list[Plan]:
    """The plan each office pays on (`plan_of_office`), one per office."""
    offices = sorted({p.office_id for p in plans}, key=str)
    return [plan for office in offices if (plan := plan_of_office(plans, office)) is not None]


def lines(snapshot: Snapshot, plans: Sequence[Plan]) -> list[InvoiceLine]:
    result = []
    for counts in snapshot.offices:
        plan = plan_of_office(plans, counts.office_id)
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
                unit_price=(plan.price_of(counts.license_type) or 0) if plan else 0,
            )
        )
    for pooled in snapshot.pools:
        payer = oldest_active(plans, pooled.currency)
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
                unit_price=(payer.price_of(pooled.license_type) or 0) if payer else 0,
            )
        )
    return [line for line in result if line.units]


def reconcile(snapshot: Snapshot, billed: Sequence[InvoiceLine]) -> Reconciliation:
    """Units billed against live units; keys must be distinct (no unit billed twice)."""
    office_keys = [(s.office_id, s.currency, s.license_type) for s in snapshot.offices]
    pool_keys = [(s.currency, s.license_type) for s in snapshot.pools]
    distinct = len(set(office_keys)) == len(office_keys) and len(set(pool_keys)) == len(pool_keys)
    units = sum(line.units for line in billed)
    return Reconciliation(snapshot.live_units, units, distinct and units == snapshot.live_units)


def totals(billed: Sequence[InvoiceLine], charges: Sequence[PurchaseCharge]) -> dict[str, int]:
    """The total per currency: unit lines plus purchase charges."""
    result: dict[str, int] = {}
    for line in billed:
        result[line.currency] = result.get(line.currency, 0) + line.amount
    for charge in charges:
        result[charge.currency] = result.get(charge.currency, 0) + charge.amount
    return dict(sorted(result.items()))
