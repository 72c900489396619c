"""Closing a cycle: one invoice per company and period from one pool snapshot (and one
read of the credit overage), once the period has ended for every plan; then the units
scheduled for removal in the period's cycles end. Reading invoices."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from libs.common.unit_of_work import read_one
from services.billing.adapters.credits import Credits
from services.billing.adapters.pool import Pool
from services.billing.domain import cycles, errors, events, invoicing, removals
from services.billing.domain.model import Invoice, Plan
from services.billing.unit_of_work import BillingUnitOfWork
from services.billing.use_cases.common import derived_request_id

log = logging.getLogger(__name__)


class _PeriodTaken(Exception):
    """Another close made the period's invoice first (its transaction is rolled back)."""


async def close_cycle(
    company_id: uuid.UUID,
    period: str,
    uow: BillingUnitOfWork,
    pool: Pool,
    credits: Credits | None = None,
) -> Invoice:
    """The period's invoice (made once; a second close answers the same), with the
    removals that end with the period terminated. A period is closed only once it has
    ended for every office's plan, so no purchase can fall in it afterwards and no
    office loses a unit before the end of its own cycle."""
    cycles.parse_period(period)
    async with uow.reading() as tx:
        now = await tx.instants.now()
        existing = await tx.invoices.of_period(company_id, period)
        pending = await tx.purchases.pending_in_period(company_id, period)
        plans = await tx.plans.of_company(company_id)
    if period > cycles.period_of(now):
        raise errors.period_not_started(period)
    if existing is None:
        ends_at = cycles.period_end(invoicing.paying_plans(plans), period)
        if now < ends_at:
            raise errors.period_not_ended(period, ends_at)
        if pending:
            raise errors.purchases_in_progress(period, pending)
        await _make_invoice(company_id, period, now, plans, uow, pool, credits)
        async with uow.reading() as tx:
            existing = await tx.invoices.of_period(company_id, period)
    assert existing is not None
    invoice, terminated = existing
    if terminated:
        return invoice
    count = await _terminate_ending(invoice, plans, pool)
    async with uow.reading() as tx:
        await tx.invoices.terminations_done(invoice.company_id, invoice.invoice_id, count)
        found = await tx.invoices.of_period(company_id, period)
    assert found is not None
    return found[0]


async def _make_invoice(
    company_id: uuid.UUID,
    period: str,
    now: datetime,
    plans: Sequence[Plan],
    uow: BillingUnitOfWork,
    pool: Pool,
    credits: Credits | None,
) -> None:
    """Writes the period's invoice, unless another close wrote it first. The invoice
    carries, in its own transaction, every completed charge of the period or an earlier
    one that no invoice carries yet, and those of the next period completed by `now`
    (read before the snapshot, so their new units are on the lines: billed in advance):
    each charge is on exactly one invoice.

    A purchase of the next period still adding its units, or completed after `now` and
    unclaimed, may have units in the snapshot whose charge the invoice cannot tell apart:
    the close is refused (`PURCHASES_IN_PROGRESS`, rolled back) and a retry claims it."""
    owed = (
        await credits.period_overage(company_id, *cycles.period_month(period))
        if credits is not None
        else []
    )
    # Last before the claim: the shorter the time from `now`, the fewer refusals.
    snapshot = await pool.snapshot(company_id)
    billed = invoicing.lines(snapshot, plans)
    overages = invoicing.overages(owed, plans)
    reconciliation = invoicing.reconcile(snapshot, billed)
    if not reconciliation.balanced:
        log.error("invoice of %s %s does not reconcile: %s", company_id, period, reconciliation)
    if reconciliation.unpriced_units:
        log.warning(
            "invoice of %s %s has %d unpriced units (billed at 0)",
            company_id,
            period,
            reconciliation.unpriced_units,
        )
    invoice_id = uuid.uuid4()
    try:
        async with uow.transaction() as tx:
            claimed = await tx.purchases.claim_charges(company_id, period, invoice_id, now)
            following = cycles.next_period(period)
            unclear = await tx.purchases.adding_unclaimed(company_id, following)
            if unclear:
                raise errors.purchases_in_progress(following, unclear)
            charges = invoicing.carried(period, claimed)
            invoice = Invoice(
                invoice_id=invoice_id,
                company_id=company_id,
                period=period,
                snapshot_at=snapshot.taken_at,
                lines=tuple(billed),
                charges=tuple(charges),
                reconciliation=reconciliation,
                created_at=now,
                totals=invoicing.totals(billed, charges, overages),
                overages=tuple(overages),
                overage_included=credits is not None,
            )
            if not await tx.invoices.insert(invoice):
                raise _PeriodTaken
            tx.events.publish(company_id, events.INVOICE_ISSUED, events.invoice_issued(invoice))
    except _PeriodTaken:
        pass


async def _terminate_ending(invoice: Invoice, plans: Sequence[Plan], pool: Pool) -> int:
    """Units whose office's cycle of removal ended with the period are terminated;
    returns how many."""
    scheduled = await pool.scheduled_for_removal(invoice.company_id)
    units = removals.ending(scheduled, plans, invoice.period)
    for batch in removals.termination_batches(units):
        await pool.terminate_units(
            derived_request_id("terminate", invoice.invoice_id, *batch), invoice.company_id, batch
        )
    return len(units)


async def get_invoice(
    company_id: uuid.UUID, invoice_id: uuid.UUID, uow: BillingUnitOfWork
) -> Invoice:
    return await read_one(
        uow,
        lambda tx: tx.invoices.get(company_id, invoice_id),
        errors.invoice_not_found,
        invoice_id,
    )


async def list_invoices(
    company_id: uuid.UUID, before: str | None, limit: int, uow: BillingUnitOfWork
) -> list[Invoice]:
    async with uow.stale_reading() as tx:
        return await tx.invoices.page(company_id, before, limit)
