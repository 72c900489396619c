"""Unified credit pooling: SetCreditPooling, GetCreditPooling."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.credits.domain import events, ledger
from services.credits.domain.ledger import Ledger
from services.credits.domain.model import Pooling, Transfer, balance_of, company_pool, issued
from services.credits.unit_of_work import CreditsUnitOfWork, Tx


@dataclass(frozen=True, slots=True)
class SetPooling:
    company_id: uuid.UUID
    currency: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class PoolingChanged:
    pooling: Pooling
    transfers: tuple[Transfer, ...]
    pool_balance: int


async def set_pooling(command: SetPooling, tx: Tx) -> PoolingChanged:
    """Turns pooling on (the offices' own balances of the currency move into the shared
    company balance) or off (the shared balance stays, unused until it is on again)."""
    company_id, currency = command.company_id, command.currency
    now = await tx.ledger.lock(company_id, currency)
    pooling = await tx.offices.pooling(company_id, currency)
    transfers: tuple[Transfer, ...] = ()
    if command.enabled and not pooling.enabled:
        offices = await tx.offices.of_currency(company_id, currency)
        keys = [issued(), company_pool(), *(balance_of(o) for o in offices)]
        loaded = await tx.ledger.load(company_id, currency, keys, now)
        book = Ledger(loaded.balances)
        moved = ledger.pool_office_balances(book, offices)
        await tx.ledger.apply(company_id, currency, loaded.ids, book.postings, book.deltas(), now)
        transfers = ledger.transfers_to_pool(moved, currency)
        if moved:  # percent thresholds are taken of the new level
            await tx.limits.set_top_up(company_id, currency, book.balance(company_pool()), now)
    if command.enabled != pooling.enabled:
        pooling = await tx.offices.set_pooling(company_id, currency, command.enabled, now)
        tx.events.publish(company_id, events.POOLING_CHANGED, events.pooling_changed(pooling))
    shared = await tx.ledger.load(company_id, currency, [company_pool()], now)
    return PoolingChanged(pooling, transfers, shared.balances[company_pool()])


async def get_pooling(company_id: uuid.UUID, currency: str, uow: CreditsUnitOfWork) -> Pooling:
    async with uow.reading() as tx:
        return await tx.offices.pooling(company_id, currency)
