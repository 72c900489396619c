"""The balances and the ledger: GetBalances, ListLedgerEntries, CheckLedger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.credits.domain import balances, ledger
from services.credits.domain.model import Balances, LedgerCheck, LedgerEntry, OfficeAccount
from services.credits.repository.ledger import EntryFilter
from services.credits.unit_of_work import CreditsUnitOfWork

_OFFICES_PER_READ = 1000


@dataclass(frozen=True, slots=True)
class EntriesPage:
    """A page of ledger entries, in entry order after `after`; one more than `size` is
    read, to know whether another page follows."""

    where: EntryFilter
    after: int | None
    size: int


async def get_balances(
    company_id: uuid.UUID, currency: str | None, uow: CreditsUnitOfWork
) -> Balances:
    """Every balance of the company (of one currency, or all) as of one instant."""
    async with uow.snapshot() as tx:
        now = await tx.ledger.now()
        offices: list[OfficeAccount] = []
        after = None
        while True:
            page = await tx.offices.page(company_id, currency, after, _OFFICES_PER_READ)
            offices.extend(page)
            if len(page) < _OFFICES_PER_READ:
                break
            after = page[-1].office_id
        poolings = await tx.offices.company_pooling(company_id, currency)
        accounts = await tx.ledger.of_kinds(company_id, currency, balances.BALANCE_KINDS)
        periods = balances.current_periods(offices, now)
        allowances = await tx.ledger.by_key(
            company_id, balances.current_allowances(offices, periods)
        )
    return balances.balances_of(now, currency, offices, poolings, [*accounts, *allowances])


async def list_entries(page: EntriesPage, uow: CreditsUnitOfWork) -> list[LedgerEntry]:
    async with uow.stale_reading() as tx:
        return await tx.ledger.entries(page.where, page.after, page.size + 1)


async def check_ledger(company_id: uuid.UUID, uow: CreditsUnitOfWork) -> LedgerCheck:
    """Proves the company's ledger as of one instant: balances equal the sums of their
    entries, no sign rule broken, consumption equal to usage, every currency balanced."""
    async with uow.snapshot() as tx:
        now = await tx.ledger.now()
        checked = await tx.ledger.checked(company_id)
        entries = await tx.ledger.count_entries(company_id)
    found = ledger.violations((c.account, c.entries_sum, c.usage_sum) for c in checked)
    return LedgerCheck(now, len(checked), entries, tuple(found))
