"""Office caps on the shared company balance and thresholds on it: SetOfficeCreditCap,
ClearOfficeCreditCap, ListOfficeCreditCaps, SetCreditThresholds, GetCreditThresholds,
ListCreditAlerts (the alerts themselves are recorded with the usage, `recording`).

Caps and thresholds change under the (company, currency) lock of the usage writers, so
a batch of usages sees them either before or after the change, never half."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from libs.common.errors import required
from services.credits.domain import errors
from services.credits.domain.model import CreditAlert, OfficeCap, Threshold
from services.credits.domain.periods import period_containing
from services.credits.repository.limits import StoredCap
from services.credits.unit_of_work import CreditsUnitOfWork, Tx


@dataclass(frozen=True, slots=True)
class SetCap:
    company_id: uuid.UUID
    office_id: uuid.UUID
    cap: int


@dataclass(frozen=True, slots=True)
class ClearCap:
    company_id: uuid.UUID
    office_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class CapsPage:
    """A page of a company's caps after an office id (one more than `size` is read)."""

    company_id: uuid.UUID
    after: uuid.UUID | None
    size: int


@dataclass(frozen=True, slots=True)
class SetThresholds:
    company_id: uuid.UUID
    currency: str
    thresholds: tuple[Threshold, ...]


@dataclass(frozen=True, slots=True)
class Thresholds:
    thresholds: tuple[Threshold, ...]
    top_up: int  # the level percent thresholds are taken of


@dataclass(frozen=True, slots=True)
class AlertsPage:
    """A page of a company's alerts after (created_at, alert_id)."""

    company_id: uuid.UUID
    currency: str | None
    after: tuple[datetime, uuid.UUID] | None
    size: int


async def set_cap(command: SetCap, tx: Tx) -> OfficeCap:
    """Sets the office's cap; what it drew in its current period counts against it."""
    office = required(
        await tx.offices.get(command.company_id, command.office_id),
        errors.office_not_found,
        command.office_id,
    )
    now = await tx.ledger.lock(command.company_id, office.currency)
    await tx.limits.set_cap(command.company_id, command.office_id, command.cap, now)
    [stored] = await tx.limits.caps(command.company_id, [command.office_id], None, 1)
    [cap] = await _with_draws([stored], now, tx)
    return cap


async def clear_cap(command: ClearCap, tx: Tx) -> bool:
    """Removes the office's cap; whether it had one."""
    office = required(
        await tx.offices.get(command.company_id, command.office_id),
        errors.office_not_found,
        command.office_id,
    )
    await tx.ledger.lock(command.company_id, office.currency)
    return await tx.limits.clear_cap(command.company_id, command.office_id)


async def list_caps(page: CapsPage, uow: CreditsUnitOfWork) -> list[OfficeCap]:
    async with uow.reading() as tx:
        stored = await tx.limits.caps(page.company_id, None, page.after, page.size + 1)
        return await _with_draws(stored, await tx.ledger.now(), tx)


async def _with_draws(stored: Sequence[StoredCap], now: datetime, tx: Tx) -> list[OfficeCap]:
    """The caps with what each office drew in its current period."""
    if not stored:
        return []
    periods = {c.office_id: period_containing(c.period_anchor, now) for c in stored}
    drawn = await tx.limits.draws(
        stored[0].company_id, {(o, p.start): p for o, p in periods.items()}
    )
    return [
        OfficeCap(
            company_id=c.company_id,
            office_id=c.office_id,
            currency=c.currency,
            cap=c.cap,
            period=periods[c.office_id],
            drawn=drawn[(c.office_id, periods[c.office_id].start)],
            updated_at=c.updated_at,
        )
        for c in stored
    ]


async def set_thresholds(command: SetThresholds, tx: Tx) -> Thresholds:
    """Replaces the currency's thresholds; one that stays keeps its alerts."""
    now = await tx.ledger.lock(command.company_id, command.currency)
    await tx.limits.set_thresholds(command.company_id, command.currency, command.thresholds, now)
    return await _thresholds(command.company_id, command.currency, tx)


async def get_thresholds(
    company_id: uuid.UUID, currency: str, uow: CreditsUnitOfWork
) -> Thresholds:
    async with uow.reading() as tx:
        return await _thresholds(company_id, currency, tx)


async def _thresholds(company_id: uuid.UUID, currency: str, tx: Tx) -> Thresholds:
    found = await tx.limits.thresholds(company_id, currency)
    return Thresholds(tuple(sorted(found)), await tx.limits.top_up(company_id, currency))


async def list_alerts(page: AlertsPage, uow: CreditsUnitOfWork) -> list[CreditAlert]:
    async with uow.reading() as tx:
        return await tx.limits.alerts(page.company_id, page.currency, page.after, page.size + 1)
