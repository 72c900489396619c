"""Closing a cycle: one invoice per company and period from one pool snapshot, then the
units scheduled for removal end with the cycle. Reading invoices."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from services.billing.adapters.pool import Pool
from services.billing.domain import cycles, errors, invoicing, removals
from services.billing.domain.model import Invoice
from services.billing.unit_of_work import BillingUnitOfWork
from services.billing.use_cases.common import derived_request_id

log = logging.getLogger(__name__)


async def close_cycle(
    company_id: uuid.UUID, period: str, uow: BillingUnitOfWork, pool: Pool
) -> Invoice:
    """The period's invoice (made once; a second close answers the same), with the
    period's removals terminated."""
    cycles.parse_period(period)
    async with uow.reading() as tx:
        now = await tx.instants.now()
        existing = await tx.invoices.of_period(company_id, period)
        pending = await tx.purchases.pending_in_period(company_id, period)
    if period > cycles.period_of(now):
        raise errors.period_not_started(period)
    if existing is None:
        if pending:
            raise errors.purchases_in_progress(period, pending)
        invoice = await _make_invoice(company_id, period, now, uow, pool)
        async with uow.reading() as tx:
            await tx.invoices.insert(invoice)
            existing = await tx.invoices.of_period(company_id, period)
    assert existing is not None
    invoice, terminated = existing
    if terminated:
        return invoice
    count = await _terminate_scheduled(company_id, invoice.invoice_id, pool)
    async with uow.reading() as tx:
        await tx.invoices.terminations_done(invoice.company_id, invoice.invoice_id, count)
        found = await tx.invoices.of_period(company_id, period)
    assert found is not None
    return found[0]


async def _make_invoice(
    company_id: uuid.UUID, period: str, now: datetime, uow: BillingUnitOfWork, pool: Pool
) -> Invoice:
    snapshot = await pool.snapshot(company_id)
    async with uow.reading() as tx:
        plans = await tx.plans.of_company(company_id)
        charges = await tx.purchases.charges_of_period(company_id, period)
    billed = invoicing.lines(snapshot, plans)
    reconciliation = invoicing.reconcile(snapshot, billed)
    if not reconciliation.balanced:
        log.error("invoice of %s %s does not reconcile: %s", company_id, period, reconciliation)
    return Invoice(
        invoice_id=uuid.uuid4(),
        company_id=company_id,
        period=period,
        snapshot_at=snapshot.taken_at,
        lines=tuple(billed),
        charges=tuple(charges),
        reconciliation=reconciliation,
        created_at=now,
        totals=invoicing.totals(billed, charges),
    )


async def _terminate_scheduled(company_id: uuid.UUID, invoice_id: uuid.UUID, pool: Pool) -> int:
    """Units scheduled for removal end with the cycle; returns how many."""
    units = await pool.scheduled_for_removal(company_id)
    for batch in removals.termination_batches(units):
        await pool.terminate_units(
            derived_request_id("terminate", invoice_id, *batch), company_id, batch
        )
    return len(units)


async def get_invoice(
    company_id: uuid.UUID, invoice_id: uuid.UUID, uow: BillingUnitOfWork
) -> Invoice:
    async with uow.reading() as tx:
        found = await tx.invoices.get(company_id, invoice_id)
    if found is None:
        raise errors.invoice_not_found(invoice_id)
    return found


async def list_invoices(
    company_id: uuid.UUID, before: str | None, limit: int, uow: BillingUnitOfWork
) -> list[Invoice]:
    async with uow.reading() as tx:
        return await tx.invoices.page(company_id, before, limit)
