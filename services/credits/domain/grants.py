"""Where granted credits go (docs/product.md, "Credits").

- `COMPANY_POOL`: the shared company balance of the currency named;
- `OFFICE_BALANCE`: the named office's own balance, refused while unified credit pooling
  is on for its currency (its balance would not be drawn; CREDIT_POOLING_ENABLED);
- `AI_AGENT_CREDITS`: the company's AI agent credits, held by the primary office
  (NO_PRIMARY_OFFICE without one; NOT_PRIMARY_OFFICE if another office is named).

A currency given must be the target's (CURRENCY_MISMATCH).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.credits.domain import errors
from services.credits.domain.ledger import grant_account
from services.credits.domain.model import AccountKey, GrantTarget, OfficeAccount, Pooling


@dataclass(frozen=True, slots=True)
class Destination:
    """The account a grant goes to, and its office and currency."""

    office_id: uuid.UUID | None
    currency: str
    account: AccountKey


def destination(
    target: GrantTarget,
    office_id: uuid.UUID | None,
    currency: str | None,
    named: OfficeAccount | None,
    primary: OfficeAccount | None,
) -> Destination:
    """Where a grant goes. `named` is the office `office_id` names (None if it has no
    account); `primary` the company's primary office (needed for AI agent credits)."""
    if target is GrantTarget.COMPANY_POOL:
        assert currency is not None, "the company pool's currency is a required field"
        return Destination(None, currency, grant_account(target, None))
    if office_id is not None and named is None:
        raise errors.office_not_found(office_id)
    if target is GrantTarget.OFFICE_BALANCE:
        assert named is not None, "an office balance names its office"
        office = named
    else:
        if primary is None:
            raise errors.no_primary_office()
        if office_id is not None and office_id != primary.office_id:
            raise errors.not_primary_office(office_id)
        office = primary
    if currency is not None and currency != office.currency:
        raise errors.currency_mismatch("currency", currency, office.currency)
    return Destination(office.office_id, office.currency, grant_account(target, office.office_id))


def check_pooling(target: GrantTarget, pooling: Pooling) -> None:
    """Office balances take no grants while their currency is pooled."""
    if target is GrantTarget.OFFICE_BALANCE and pooling.enabled:
        raise errors.pooling_enabled(pooling.currency)
