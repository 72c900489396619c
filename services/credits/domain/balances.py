"""What GetBalances shows, from a company's accounts at one instant (docs/product.md,
"Credits").

Per office: its current period, the allowance left in it (all of it while the period is
not opened yet), its own balance, what it consumed and the overage it owes; the AI agent
credits show on the primary office only. Per currency: the shared company balance and
whether pooling is on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from services.credits.domain.model import (
    AccountKey,
    AccountKind,
    Balances,
    LedgerAccount,
    OfficeAccount,
    OfficeBalance,
    Period,
    PoolBalance,
    Pooling,
    ai_agent_credits,
    allowance_of,
    balance_of,
    company_pool,
    consumed_by,
    overage_of,
)
from services.credits.domain.periods import period_containing

# The accounts GetBalances reads besides the current periods' allowances.
BALANCE_KINDS = (
    AccountKind.COMPANY_POOL,
    AccountKind.AI_AGENT_CREDITS,
    AccountKind.OFFICE_BALANCE,
    AccountKind.CONSUMED,
    AccountKind.OVERAGE,
)


def current_periods(offices: Iterable[OfficeAccount], now: datetime) -> dict[uuid.UUID, Period]:
    """Each office's billing period at `now`, by office id."""
    return {o.office_id: period_containing(o.period_anchor, now) for o in offices}


def current_allowances(
    offices: Iterable[OfficeAccount], periods: Mapping[uuid.UUID, Period]
) -> list[tuple[str, AccountKey]]:
    """The (currency, allowance account) of each office's current period."""
    return [(o.currency, allowance_of(o.office_id, periods[o.office_id].start)) for o in offices]


def balances_of(
    now: datetime,
    currency: str | None,
    offices: Sequence[OfficeAccount],
    poolings: Iterable[Pooling],
    accounts: Iterable[LedgerAccount],
) -> Balances:
    """The balances of the offices (of `currency`, or all), from their accounts:
    the company's pools, AI agent credits, office balances, consumption, overage, and the
    allowances of the current periods."""
    pooled = {p.currency: p.enabled for p in poolings}
    by_key: dict[tuple[str, AccountKey], int] = {}
    pool_currencies: set[str] = set()
    for account in accounts:
        by_key[(account.currency, account.key)] = account.balance
        if account.key == company_pool():
            pool_currencies.add(account.currency)
    periods = current_periods(offices, now)
    primary = next((o for o in offices if o.primary), None)
    office_balances = []
    for o in offices:
        period = periods[o.office_id]
        office_balances.append(
            OfficeBalance(
                office_id=o.office_id,
                currency=o.currency,
                primary=o.primary,
                period=period,
                allowance=o.allowance,
                allowance_remaining=by_key.get(
                    (o.currency, allowance_of(o.office_id, period.start)), o.allowance
                ),
                balance=by_key.get((o.currency, balance_of(o.office_id)), 0),
                ai_agent_credits=by_key.get((o.currency, ai_agent_credits()), 0)
                if o is primary
                else 0,
                consumed=by_key.get((o.currency, consumed_by(o.office_id)), 0),
                overage=-by_key.get((o.currency, overage_of(o.office_id)), 0),
            )
        )
    currencies = {o.currency for o in offices} | set(pooled) | pool_currencies
    if currency is not None:
        currencies = {currency}
    pools = tuple(
        PoolBalance(c, pooled.get(c, False), by_key.get((c, company_pool()), 0))
        for c in sorted(currencies)
    )
    return Balances(now, pools, tuple(office_balances))
