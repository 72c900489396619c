"""Quotes: a checkout preview (restored, from the pool, new, and the prorated amount);
with `hold`, the pool units are held under a quote id until the quote expires."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from services.billing.adapters.pool import Pool
from services.billing.domain import checkout, proration
from services.billing.domain.model import Quote
from services.billing.unit_of_work import BillingUnitOfWork, Tx
from services.billing.use_cases.checkout import checkout_for, priced_alike
from services.billing.use_cases.common import derived_request_id


@dataclass(frozen=True, slots=True)
class QuoteCommand:
    company_id: uuid.UUID
    office_id: uuid.UUID
    license_type: str
    quantity: int
    hold_request_id: str | None = None  # set: hold the pool units (a quote id is issued)


async def quote(
    command: QuoteCommand, uow: BillingUnitOfWork, pool: Pool, hold_seconds: int
) -> Quote:
    """The checkout preview; a held quote is recorded with `save_quote`."""
    found = await priced_alike(
        await checkout_for(uow, command.company_id, command.office_id, command.license_type),
        pool,
    )
    plan, now = found.plan, found.now
    availability = await pool.availability(
        command.company_id, command.office_id, command.license_type
    )
    scheduled = availability.removal_scheduled
    need = command.quantity - min(command.quantity, scheduled)
    available = availability.from_pool_sources if found.takes_part and need else 0
    hold_id: uuid.UUID | None = None
    expires_at = None
    own_returns: int | None = None  # None: as the availability says
    if command.hold_request_id is not None:
        expires_at = now + timedelta(seconds=hold_seconds)
        wanted = min(need, available)
        available = 0
        if wanted:
            # Only when something is there: a Reserve that can find nothing is refused.
            held = await pool.reserve(
                derived_request_id("quote", command.company_id, command.hold_request_id, wanted),
                command.company_id,
                command.office_id,
                command.license_type,
                wanted,
                hold_seconds,
            )
            if held is not None:
                hold_id = held.hold_id
                available = len(held.unit_ids)
                expires_at = held.expires_at
                own_returns = held.own_returns
    split = checkout.split(command.quantity, scheduled, available)
    if own_returns is None:
        own_returns = checkout.own_returns(split, availability)
    return Quote(
        quote_id=uuid.uuid4() if command.hold_request_id is not None else None,
        company_id=command.company_id,
        office_id=command.office_id,
        license_type=command.license_type,
        quantity=command.quantity,
        split=split,
        plan_id=plan.plan_id,
        currency=plan.currency,
        unit_price=found.unit_price,
        amount=proration.prorate(found.unit_price, split.new, found.cycle, now),
        cycle=found.cycle,
        quoted_at=now,
        hold_id=hold_id,
        expires_at=expires_at,
        own_returns=own_returns,
    )


async def save_quote(found: Quote, tx: Tx) -> Quote:
    await tx.quotes.insert(found)
    return found
