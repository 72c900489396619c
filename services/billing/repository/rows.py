"""The columns of billing's tables and their rows as domain objects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.billing.domain.invoicing import totals
from services.billing.domain.model import (
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
    active, is_primary, created_at, updated_at"""
QUOTE_COLUMNS = """quote_id, company_id, office_id, license_type, quantity, restored, from_pool,
    new_units, plan_id, currency, unit_price, amount, cycle_start, cycle_end, quoted_at,
    hold_id, expires_at"""
PURCHASE_COLUMNS = """purchase_id, company_id, request_id, office_id, license_type, quantity,
    state, plan_id, currency, unit_price, cycle_start, cycle_end, purchased_at, attempt, step,
    quote_id, restored, from_pool, new_units, amount, hold_id, reserve_quantity, unit_ids,
    resolved_at,
    failure_kind, failure_reason, failure_message"""
INVOICE_COLUMNS = """invoice_id, company_id, period, snapshot_at, lines, charges, live_units,
    billed_units, balanced, terminated_units, terminations_done, created_at"""


def to_plan(row: asyncpg.Record) -> Plan:
    return Plan(
        plan_id=row["plan_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        kind=PlanKind(row["kind"]),
        currency=row["currency"],
        prices={str(k): int(v) for k, v in row["prices"].items()},
        contracted=row["contracted"],
        start_at=row["start_at"],
        active=row["active"],
        primary=row["is_primary"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_quote(row: asyncpg.Record) -> Quote:
    return Quote(
        quote_id=row["quote_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        license_type=row["license_type"],
        quantity=row["quantity"],
        split=Split(row["restored"], row["from_pool"], row["new_units"]),
        plan_id=row["plan_id"],
        currency=row["currency"],
        unit_price=row["unit_price"],
        amount=row["amount"],
        cycle=Cycle(row["cycle_start"], row["cycle_end"]),
        quoted_at=row["quoted_at"],
        hold_id=row["hold_id"],
        expires_at=row["expires_at"],
    )


def to_purchase(row: asyncpg.Record) -> Purchase:
    split = None
    if row["from_pool"] is not None:
        split = Split(row["restored"], row["from_pool"], row["new_units"])
    return Purchase(
        purchase_id=row["purchase_id"],
        company_id=row["company_id"],
        request_id=row["request_id"],
        office_id=row["office_id"],
        license_type=row["license_type"],
        quantity=row["quantity"],
        state=PurchaseState(row["state"]),
        plan_id=row["plan_id"],
        currency=row["currency"],
        unit_price=row["unit_price"],
        cycle=Cycle(row["cycle_start"], row["cycle_end"]),
        purchased_at=row["purchased_at"],
        attempt=row["attempt"],
        step=Step(row["step"]),
        quote_id=row["quote_id"],
        split=split,
        amount=row["amount"],
        hold_id=row["hold_id"],
        reserve_quantity=row["reserve_quantity"],
        unit_ids=tuple(row["unit_ids"]),
        restored=row["restored"],
        resolved_at=row["resolved_at"],
        failure_kind=row["failure_kind"],
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
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
    }


def _line(data: dict[str, Any]) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind(data["kind"]),
        office_id=uuid.UUID(data["office_id"]) if data["office_id"] else None,
        plan_id=uuid.UUID(data["plan_id"]) if data["plan_id"] else None,
        currency=data["currency"],
        license_type=data["license_type"],
        assigned=data["assigned"],
        spare=data["spare"],
        removal_scheduled=data["removal_scheduled"],
        held=data["held"],
        pooled=data["pooled"],
        unit_price=data["unit_price"],
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
    }


def _charge(data: dict[str, Any]) -> PurchaseCharge:
    return PurchaseCharge(
        purchase_id=uuid.UUID(data["purchase_id"]),
        office_id=uuid.UUID(data["office_id"]),
        plan_id=uuid.UUID(data["plan_id"]),
        license_type=data["license_type"],
        currency=data["currency"],
        new_units=data["new_units"],
        amount=data["amount"],
        purchased_at=datetime.fromisoformat(data["purchased_at"]),
    )


def to_invoice(row: asyncpg.Record) -> tuple[Invoice, bool]:
    """The invoice, and whether its removal terminations are done."""
    lines = tuple(_line(d) for d in row["lines"])
    charges = tuple(_charge(d) for d in row["charges"])
    invoice = Invoice(
        invoice_id=row["invoice_id"],
        company_id=row["company_id"],
        period=row["period"],
        snapshot_at=row["snapshot_at"],
        lines=lines,
        charges=charges,
        reconciliation=Reconciliation(row["live_units"], row["billed_units"], row["balanced"]),
        created_at=row["created_at"],
        terminated_units=row["terminated_units"],
        totals=totals(lines, charges),
    )
    return invoice, row["terminations_done"]
