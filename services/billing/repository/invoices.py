"""Invoices: one per company and period (a unique index), written once."""

from __future__ import annotations

import uuid

import asyncpg

from services.billing.domain.model import Invoice
from services.billing.repository.rows import (
    INVOICE_COLUMNS,
    charge_json,
    line_json,
    overage_json,
    to_invoice,
)


class Invoices:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def insert(self, invoice: Invoice) -> bool:
        """False if the period already has an invoice (that one stands)."""
        row = await self._conn.fetchrow(
            f"""
            INSERT INTO billing.invoices ({INVOICE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, false, $10, $11, $12)
            ON CONFLICT (company_id, period) DO NOTHING
            RETURNING invoice_id
            """,
            invoice.invoice_id,
            invoice.company_id,
            invoice.period,
            invoice.snapshot_at,
            [line_json(line) for line in invoice.lines],
            [charge_json(c) for c in invoice.charges],
            invoice.reconciliation.live_units,
            invoice.reconciliation.billed_units,
            invoice.reconciliation.balanced,
            invoice.created_at,
            [overage_json(o) for o in invoice.overages],
            invoice.overage_included,
        )
        return row is not None

    async def of_period(self, company_id: uuid.UUID, period: str) -> tuple[Invoice, bool] | None:
        """The period's invoice, and whether its terminations are done."""
        row = await self._conn.fetchrow(
            f"SELECT {INVOICE_COLUMNS} FROM billing.invoices WHERE company_id = $1 AND period = $2",
            company_id,
            period,
        )
        return to_invoice(row) if row else None

    async def get(self, company_id: uuid.UUID, invoice_id: uuid.UUID) -> Invoice | None:
        row = await self._conn.fetchrow(
            f"SELECT {INVOICE_COLUMNS} FROM billing.invoices"
            " WHERE company_id = $1 AND invoice_id = $2",
            company_id,
            invoice_id,
        )
        return to_invoice(row)[0] if row else None

    async def page(self, company_id: uuid.UUID, before: str | None, limit: int) -> list[Invoice]:
        rows = await self._conn.fetch(
            f"""
            SELECT {INVOICE_COLUMNS} FROM billing.invoices
            WHERE company_id = $1 AND ($2::text IS NULL OR period < $2)
            ORDER BY period DESC LIMIT $3
            """,
            company_id,
            before,
            limit,
        )
        return [to_invoice(r)[0] for r in rows]

    async def terminations_done(
        self, company_id: uuid.UUID, invoice_id: uuid.UUID, count: int
    ) -> None:
        await self._conn.execute(
            "UPDATE billing.invoices SET terminated_units = $3, terminations_done = true"
            " WHERE company_id = $1 AND invoice_id = $2 AND NOT terminations_done",
            company_id,
            invoice_id,
            count,
        )
