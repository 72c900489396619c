"""GrantCredits: credits added to the company pool, an office balance or the AI agent
credits (`domain/grants.py` says where they may go)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.credits.domain import errors, events, grants, ledger
from services.credits.domain.grants import Destination
from services.credits.domain.ledger import Ledger
from services.credits.domain.model import Grant, GrantTarget, issued
from services.credits.unit_of_work import Tx


@dataclass(frozen=True, slots=True)
class GrantCredits:
    company_id: uuid.UUID
    target: GrantTarget
    office_id: uuid.UUID | None
    currency: str | None
    amount: int
    note: str


@dataclass(frozen=True, slots=True)
class Granted:
    grant: Grant
    balance: int  # of the account granted to, after the grant


async def grant_credits(command: GrantCredits, tx: Tx) -> Granted:
    destination = await _destination(command, tx)
    company_id, currency = command.company_id, destination.currency
    now = await tx.ledger.lock(company_id, currency)
    # Where the grant goes was read before the lock: it may have changed meanwhile.
    if destination != await _destination(command, tx):
        raise errors.account_changed()
    grants.check_pooling(command.target, await tx.offices.pooling(company_id, currency))
    target = destination.account
    loaded = await tx.ledger.load(company_id, currency, [issued(), target], now)
    book = Ledger(loaded.balances)
    grant = Grant(
        grant_id=uuid.uuid4(),
        company_id=company_id,
        target=command.target,
        office_id=destination.office_id,
        currency=currency,
        amount=command.amount,
        note=command.note,
        created_at=now,
    )
    ledger.grant(book, target, command.amount, grant.grant_id)
    await tx.ledger.insert_grant(grant)
    await tx.ledger.apply(company_id, currency, loaded.ids, book.postings, book.deltas(), now)
    balance = book.balance(target)
    if command.target is GrantTarget.COMPANY_POOL:  # percent thresholds are taken of it
        await tx.limits.set_top_up(company_id, currency, balance, now)
    tx.events.publish(company_id, events.CREDITS_GRANTED, events.granted(grant, balance))
    return Granted(grant, balance)


async def _destination(command: GrantCredits, tx: Tx) -> Destination:
    named, primary = None, None
    if command.target is GrantTarget.OFFICE_BALANCE:
        assert command.office_id is not None
        named = await tx.offices.get(command.company_id, command.office_id)
    elif command.target is GrantTarget.AI_AGENT_CREDITS:
        wanted = [command.office_id] if command.office_id else []
        offices, primary = await tx.offices.with_primary(command.company_id, wanted)
        named = offices.get(command.office_id) if command.office_id else None
    return grants.destination(command.target, command.office_id, command.currency, named, primary)
