"""Office credit accounts: who may change one, when its currency is fixed, and what a
partial change keeps (docs/product.md, "Credits").

An office belongs to one company for good: another company naming it finds no such
office. Its currency may change until anything was charged or granted to it; from then
on its ledger is in that currency and the change is refused (OFFICE_CURRENCY_LOCKED).
"""

from __future__ import annotations

import uuid
from collections.abc import Set
from dataclasses import replace

from services.credits.domain import errors
from services.credits.domain.model import OfficeAccount


def check_owner(account: OfficeAccount, owner: uuid.UUID | None) -> None:
    """Refuses an account naming an office of another company (as if it did not exist)."""
    if owner is not None and owner != account.company_id:
        raise errors.office_not_found(account.office_id)


def currencies_touched(current: OfficeAccount | None, account: OfficeAccount) -> list[str]:
    """The currencies whose writers a change of the account must wait for: the new one
    and the one it leaves. Sorted, so two changes always take them in the same order."""
    return sorted({account.currency} | ({current.currency} if current else set()))


def changes_currency(current: OfficeAccount | None, account: OfficeAccount) -> bool:
    return current is not None and current.currency != account.currency


def check_currency_change(
    current: OfficeAccount | None, account: OfficeAccount, has_ledger: bool
) -> None:
    """Refuses moving an office with ledger entries to another currency."""
    if current is not None and changes_currency(current, account) and has_ledger:
        raise errors.office_currency_locked(account.office_id, current.currency)


def merged(
    current: OfficeAccount | None, account: OfficeAccount, fields: Set[str]
) -> OfficeAccount:
    """The account after a change of `fields` only (billing sets what a plan decides and
    keeps the operator's overage policy); no fields, or no account yet: `account` whole."""
    if not fields or current is None:
        return account
    return replace(current, **{name: getattr(account, name) for name in fields})
