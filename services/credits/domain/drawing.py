"""The draw order of a usage (docs/product.md, "Credits").

A usage of an office (calling, messaging, fax) draws, in this order:

1. `ALLOWANCE`: the office's remaining included allowance of the billing period the
   usage occurred in (each period has its own allowance; nothing rolls over);
2. `COMPANY_POOL`, the shared company balance of the currency, when unified credit
   pooling is on for it; `OFFICE_BALANCE`, the office's own balance, when it is off;
3. whatever is still missing is overage of the office, or, when the office's policy is
   REJECT, the usage is refused (INSUFFICIENT_CREDITS) and nothing is charged.

An office with a cap (`caps`) draws from `COMPANY_POOL` at most what its cap leaves in
the period; what the cap keeps it from drawing is missing like the rest (overage, or
refused with `limited_by` OFFICE_CAP).

`AI_AGENT` usage draws only from `AI_AGENT_CREDITS`: the company's AI agent credits,
which live on the primary office and are never pooled. A usage of another office of the
same currency draws from there too; an office whose currency is not the primary office's
(or a company without a primary office) has no AI agent credits to draw from, so all of
it is overage (or refused). AI agent usage never touches allowances or shared balances.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from services.credits.domain.errors import InsufficientCredits
from services.credits.domain.model import AccountKind, OveragePolicy, Split, UsageKind


def draw_order(
    kind: UsageKind, pooling_enabled: bool, ai_credits_reachable: bool
) -> tuple[AccountKind, ...]:
    """The accounts a usage draws from, in order."""
    if kind is UsageKind.AI_AGENT:
        return (AccountKind.AI_AGENT_CREDITS,) if ai_credits_reachable else ()
    shared = AccountKind.COMPANY_POOL if pooling_enabled else AccountKind.OFFICE_BALANCE
    return (AccountKind.ALLOWANCE, shared)


@dataclass(frozen=True, slots=True)
class Usage:
    """What the draw needs to know about one usage."""

    office_id: uuid.UUID
    currency: str
    kind: UsageKind
    amount: int
    policy: OveragePolicy


def split_usage(
    usage: Usage,
    available: Mapping[AccountKind, int],
    pooling_enabled: bool,
    ai_credits_reachable: bool,
    pool_cap_left: int | None = None,
) -> Split:
    """How much the usage takes from each source; raises InsufficientCredits when the
    office's policy rejects a usage its credits do not cover. `pool_cap_left` is what
    the office's cap still lets it draw from the shared balance (None: no cap)."""
    assert usage.amount > 0
    remaining = usage.amount
    taken: dict[AccountKind, int] = {}
    capped = False
    for source in draw_order(usage.kind, pooling_enabled, ai_credits_reachable):
        can = max(available.get(source, 0), 0)
        if source is AccountKind.COMPANY_POOL and pool_cap_left is not None:
            capped = pool_cap_left < min(can, remaining)
            can = min(can, pool_cap_left)
        take = min(remaining, can)
        taken[source] = take
        remaining -= take
    if remaining and usage.policy is OveragePolicy.REJECT:
        raise InsufficientCredits(
            usage.office_id,
            usage.amount,
            usage.amount - remaining,
            usage.currency,
            limited_by="OFFICE_CAP" if capped else None,
        )
    return Split(
        allowance=taken.get(AccountKind.ALLOWANCE, 0),
        office_balance=taken.get(AccountKind.OFFICE_BALANCE, 0),
        company_pool=taken.get(AccountKind.COMPANY_POOL, 0),
        ai_agent_credits=taken.get(AccountKind.AI_AGENT_CREDITS, 0),
        overage=remaining,
    )
