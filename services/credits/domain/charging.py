"""Charging usages of one (company, currency) together, in arrival order, on one ledger
(docs/product.md, "Credits").

A usage is charged to the billing period containing the instant it occurred (now when it
names none; at most the future tolerance ahead of now, else OCCURRED_IN_FUTURE). A
period opens at its first usage: the office's allowance as it is then is issued to the
period, and stays fixed (a later change of the allowance applies to periods not opened
yet). An open period is one whose allowance account exists, so a usage that is refused
leaves its period unopened. AI agent credits live on the primary office: offices of its
currency draw from them, others have none (`drawing`). A capped office draws from the
shared balance what its cap leaves in the period (`caps`), and every draw from the
shared balance is watched for the thresholds it crosses (`alerts`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.credits.domain import errors, ledger
from services.credits.domain.alerts import ThresholdWatch
from services.credits.domain.caps import DrawKey, PoolDraws
from services.credits.domain.drawing import Usage
from services.credits.domain.ledger import Ledger
from services.credits.domain.model import (
    AccountKey,
    OfficeAccount,
    Period,
    UsageKind,
    UsageRecord,
    ai_agent_credits,
    allowance_of,
    balance_of,
    company_pool,
    consumed_by,
    issued,
    overage_of,
)
from services.credits.domain.periods import period_containing


@dataclass(frozen=True, slots=True)
class Placed:
    """A usage of an office, placed in the period it is charged to."""

    office: OfficeAccount
    request_id: str
    kind: UsageKind
    amount: int
    occurred_at: datetime
    period: Period


def place(
    office: OfficeAccount,
    request_id: str,
    kind: UsageKind,
    amount: int,
    occurred_at: datetime | None,
    now: datetime,
    future_tolerance: timedelta,
) -> Placed:
    """The usage in its period; refuses one dated too far in the future."""
    occurred = occurred_at or now
    if occurred > now + future_tolerance:
        raise errors.occurred_in_future(occurred, now)
    period = period_containing(office.period_anchor, occurred)
    return Placed(office, request_id, kind, amount, occurred, period)


def ai_credits_for(currency: str, primary: OfficeAccount | None) -> AccountKey | None:
    """The AI agent credits usages of this currency may draw from, if any."""
    return ai_agent_credits() if primary is not None and primary.currency == currency else None


def accounts_to_load(
    usages: Iterable[Placed], ai_credits: AccountKey | None
) -> tuple[set[AccountKey], set[AccountKey]]:
    """The accounts charging these usages touches (created if missing), and the
    allowances of their periods (looked up only: an allowance that does not exist yet
    is a period not opened)."""
    accounts: set[AccountKey] = {issued(), company_pool()}
    if ai_credits is not None:
        accounts.add(ai_credits)
    allowances: set[AccountKey] = set()
    for usage in usages:
        office = usage.office.office_id
        accounts.update((balance_of(office), consumed_by(office), overage_of(office)))
        allowances.add(allowance_of(office, usage.period.start))
    return accounts, allowances


def draws_to_load(usages: Iterable[Placed], capped: Iterable[uuid.UUID]) -> dict[DrawKey, Period]:
    """The (office, period) draws of capped offices that charging these usages reads."""
    offices = set(capped)
    return {
        (u.office.office_id, u.period.start): u.period
        for u in usages
        if u.office.office_id in offices and u.kind is not UsageKind.AI_AGENT
    }


_SHARED = company_pool()


class Charging:
    """The usages of one batch charged one after the other on the balances it loaded."""

    def __init__(
        self,
        balances: Mapping[AccountKey, int],
        allowances: Iterable[AccountKey],
        pooling_enabled: bool,
        ai_credits: AccountKey | None,
        draws: PoolDraws | None = None,
        watch: ThresholdWatch | None = None,
    ) -> None:
        self._unopened = {key for key in allowances if key not in balances}
        self.ledger = Ledger({**{key: 0 for key in self._unopened}, **balances})
        self._pooling_enabled = pooling_enabled
        self._ai_credits = ai_credits
        self.draws = draws or PoolDraws({}, {})
        self.watch = watch
        # Periods this batch opened: their allowance accounts are to be created.
        self.opened: set[AccountKey] = set()

    def charge(self, usage: Placed, usage_id: uuid.UUID, now: datetime) -> UsageRecord:
        """Charges one usage in draw order; raises InsufficientCredits (nothing charged)
        when the office rejects overage its credits do not cover."""
        office = usage.office
        allowance = allowance_of(office.office_id, usage.period.start)
        opening = (
            office.allowance
            if allowance in self._unopened and allowance not in self.opened
            else None
        )
        cap_left = self.draws.left(office.office_id, usage.period.start)
        pool_before = self.ledger.balance(_SHARED) if self.watch is not None else 0
        split = ledger.charge(
            self.ledger,
            Usage(
                office.office_id, office.currency, usage.kind, usage.amount, office.overage_policy
            ),
            usage_id,
            usage.period.start,
            self._pooling_enabled,
            self._ai_credits,
            opening,
            cap_left if self._pooling_enabled else None,
        )
        if opening is not None:
            self.opened.add(allowance)
        self.draws.add(office.office_id, usage.period.start, split.company_pool)
        record = UsageRecord(
            usage_id=usage_id,
            request_id=usage.request_id,
            company_id=office.company_id,
            office_id=office.office_id,
            kind=usage.kind,
            currency=office.currency,
            amount=usage.amount,
            occurred_at=usage.occurred_at,
            period=usage.period,
            split=split,
            recorded_at=now,
        )
        if self.watch is not None and split.company_pool:
            self.watch.observe(pool_before, pool_before - split.company_pool, record)
        return record
