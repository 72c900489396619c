"""The columns of billing's tables and their rows as domain objects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from libs.common.rows import from_row
from services.billing.domain.invoicing import totals
from services.billing.domain.model import (
    CreditOverage,
    Cycle,
    Invoice,
    InvoiceLine,
    LineKind,
    Plan,
    PlanKind,
    Purchase,
    PurchaseCharge,
    PurchaseState,
    Quote,
    Reconciliation,
    Split,
)
from services.billing.domain.purchase import Step

PLAN_COLUMNS = """plan_id, company_id, office_id, kind, currency, prices, contracted, start_at,
    active, is_primary, created_at, updated_at, display_name, credit_allowance"""
QUOTE_COLUMNS = """quote_id, company_id, office_id, license_type, quantity, restored, from_pool,
    new_units, plan_id, currency, unit_price, amount, cycle_start, cycle_end, quoted_at,
    hold_id, expires_at"""
PURCHASE_COLUMNS = """purchase_id, company_id, request_id, office_id, license_type, quantity,
    state, plan_id, currency, unit_price, cycle_start, cycle_end, purchased_at, attempt, step,
    quote_id, restored, from_pool, new_units, amount, hold_id, reserve_quantity, unit_ids,
    resolved_at,
    failure_kind, failure_reason, failure_message"""
INVOICE_COLUMNS = """invoice_id, company_id, period, snapshot_at, lines, charges, live_units,
    billed_units, balanced, terminated_units, terminations_done, created_at, overages,
    overage_included"""


def to_plan(row: asyncpg.Record) -> Plan:
    return from_row(
        Plan,
        row,
        kind=PlanKind(row["kind"]),
        prices={str(k): int(v) for k, v in row["prices"].items()},
        primary=row["is_primary"],
    )


def to_quote(row: asyncpg.Record) -> Quote:
    return from_row(
        Quote,
        row,
        split=Split(row["restored"], row["from_pool"], row["new_units"]),
        cycle=Cycle(row["cycle_start"], row["cycle_end"]),
        own_returns=0,  # told in the quote's answer only; a purchase does not need it
    )


def to_purchase(row: asyncpg.Record) -> Purchase:
    split = None
    if row["from_pool"] is not None:
        split = Split(row["restored"], row["from_pool"], row["new_units"])
    return from_row(
        Purchase,
        row,
        state=PurchaseState(row["state"]),
        cycle=Cycle(row["cycle_start"], row["cycle_end"]),
        step=Step(row["step"]),
        split=split,
        unit_ids=tuple(row["unit_ids"]),
    )


def line_json(line: InvoiceLine) -> dict[str, Any]:
    return {
        "kind": line.kind.value,
        "office_id": str(line.office_id) if line.office_id else None,
        "plan_id": str(line.plan_id) if line.plan_id else None,
        "currency": line.currency,
        "license_type": line.license_type,
        "assigned": line.assigned,
        "spare": line.spare,
        "removal_scheduled": line.removal_scheduled,
        "held": line.held,
        "pooled": line.pooled,
        "unit_price": line.unit_price,
        "unpriced": line.unpriced,
    }


def _line(data: dict[str, Any]) -> InvoiceLine:
    return from_row(
        InvoiceLine,
        data,
        kind=LineKind(data["kind"]),
        office_id=uuid.UUID(data["office_id"]) if data["office_id"] else None,
        plan_id=uuid.UUID(data["plan_id"]) if data["plan_id"] else None,
        unpriced=bool(data.get("unpriced", False)),  # lines stored before the flag: priced
    )


def overage_json(owed: CreditOverage) -> dict[str, Any]:
    return {
        "office_id": str(owed.office_id),
        "plan_id": str(owed.plan_id) if owed.plan_id else None,
        "currency": owed.currency,
        "period_start": owed.period_start.isoformat(),
        "period_end": owed.period_end.isoformat(),
        "amount": owed.amount,
    }


def _overage(data: dict[str, Any]) -> CreditOverage:
    return from_row(
        CreditOverage,
        data,
        office_id=uuid.UUID(data["office_id"]),
        plan_id=uuid.UUID(data["plan_id"]) if data["plan_id"] else None,
        period_start=datetime.fromisoformat(data["period_start"]),
        period_end=datetime.fromisoformat(data["period_end"]),
    )


def charge_json(charge: PurchaseCharge) -> dict[str, Any]:
    return {
        "purchase_id": str(charge.purchase_id),
        "office_id": str(charge.office_id),
        "plan_id": str(charge.plan_id),
        "license_type": charge.license_type,
        "currency": charge.currency,
        "new_units": charge.new_units,
        "amount": charge.amount,
        "purchased_at": charge.purchased_at.isoformat(),
        "period": charge.period,
        "unit_price": charge.unit_price,
        "billed_in_advance": charge.billed_in_advance,
        "adjustment": charge.adjustment,
    }


def _charge(data: dict[str, Any], invoice_period: str) -> PurchaseCharge:
    return from_row(
        PurchaseCharge,
        data,
        purchase_id=uuid.UUID(data["purchase_id"]),
        office_id=uuid.UUID(data["office_id"]),
        plan_id=uuid.UUID(data["plan_id"]),
        purchased_at=datetime.fromisoformat(data["purchased_at"]),
        # Invoices made before charges could be carried hold only their own period's.
        period=data.get("period", invoice_period),
        # Charges stored before billing in advance: their own amount, no adjustment.
        unit_price=data.get("unit_price", 0),
        billed_in_advance=bool(data.get("billed_in_advance", False)),
        adjustment=data.get("adjustment", 0),
    )


def to_invoice(row: asyncpg.Record) -> tuple[Invoice, bool]:
    """The invoice, and whether its removal terminations are done."""
    lines = tuple(_line(d) for d in row["lines"])
    charges = tuple(_charge(d, row["period"]) for d in row["charges"])
    owed = tuple(_overage(d) for d in row["overages"])
    invoice = from_row(
        Invoice,
        row,
        lines=lines,
        charges=charges,
        reconciliation=Reconciliation(
            row["live_units"],
            row["billed_units"],
            row["balanced"],
            sum(line.units for line in lines if line.unpriced),
        ),
        totals=totals(lines, charges, owed),
        overages=owed,
    )
    return invoice, row["terminations_done"]
