"""Billing's domain events (`WatchEvents`): their types and what each one tells.

Each is published in the transaction of its change (`tx.events.publish`, see
`libs.common.outbox`); the facts are plain JSON, ids and amounts as strings.
"""

from __future__ import annotations

from typing import Any

from services.billing.domain.model import Invoice, Purchase

PURCHASE_COMPLETED = "billing.purchase.completed"
PURCHASE_FAILED = "billing.purchase.failed"
INVOICE_ISSUED = "billing.invoice.issued"

TYPES = frozenset({PURCHASE_COMPLETED, PURCHASE_FAILED, INVOICE_ISSUED})


def purchase(settled: Purchase) -> dict[str, Any]:
    """A purchase that completed (units added, amount charged) or failed (undone)."""
    data: dict[str, Any] = {
        "purchase_id": str(settled.purchase_id),
        "request_id": settled.request_id,
        "office_id": str(settled.office_id),
        "license_type": settled.license_type,
        "quantity": settled.quantity,
        "currency": settled.currency,
        "amount": str(settled.amount),
        "unit_ids": [str(u) for u in settled.unit_ids],
    }
    if settled.failure_reason:
        data["failure_reason"] = settled.failure_reason
    return data


def invoice_issued(invoice: Invoice) -> dict[str, Any]:
    return {
        "invoice_id": str(invoice.invoice_id),
        "period": invoice.period,
        "totals": {currency: str(total) for currency, total in invoice.totals.items()},
    }
