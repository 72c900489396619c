"""Office credit accounts: PutAccount, GetAccount, ListAccounts."""

from __future__ import annotations

import uuid
from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libs.common.unit_of_work import read_one
from services.credits.domain import accounts, errors
from services.credits.domain.model import OfficeAccount
from services.credits.unit_of_work import CreditsUnitOfWork, Tx

if TYPE_CHECKING:  # routing reads offices with get_account, below
    from services.credits.use_cases.routing import OfficeCurrencies


@dataclass(frozen=True, slots=True)
class AccountsPage:
    """A page of a company's accounts (of one currency, or all), after an office id;
    one more than `size` is read, to know whether another page follows."""

    company_id: uuid.UUID
    currency: str | None
    after: uuid.UUID | None
    size: int


class PutAccount:
    """Creates or replaces an office's account. Waits for the writers of the currencies
    it touches, so no usage is charged in a currency the office is leaving."""

    def __init__(self, currencies: OfficeCurrencies) -> None:
        self._currencies = currencies

    async def __call__(
        self, account: OfficeAccount, tx: Tx, fields: Set[str] = frozenset()
    ) -> OfficeAccount:
        """`fields`: only these change (empty: the whole account)."""
        accounts.check_owner(account, await tx.offices.owner(account.office_id))
        current = await tx.offices.get(account.company_id, account.office_id)
        account = accounts.merged(current, account, fields)
        now = None
        for currency in accounts.currencies_touched(current, account):
            now = await tx.ledger.lock(account.company_id, currency)
        assert now is not None
        has_ledger = accounts.changes_currency(current, account) and (
            await tx.offices.has_ledger(account.company_id, account.office_id)
        )
        accounts.check_currency_change(current, account, has_ledger)
        saved = await tx.offices.put(account, now)
        self._currencies.forget(account.company_id, account.office_id)
        return saved


async def get_account(
    company_id: uuid.UUID, office_id: uuid.UUID, uow: CreditsUnitOfWork
) -> OfficeAccount:
    return await read_one(
        uow, lambda tx: tx.offices.get(company_id, office_id), errors.office_not_found, office_id
    )


async def list_accounts(page: AccountsPage, uow: CreditsUnitOfWork) -> list[OfficeAccount]:
    async with uow.stale_reading() as tx:
        return await tx.offices.page(page.company_id, page.currency, page.after, page.size + 1)
