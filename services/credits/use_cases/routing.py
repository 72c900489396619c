"""Which currency an office is in, remembered: a usage is routed to the writer of its
(company, currency) without a read. The batch checks the office again under the lock
(OFFICE_CHANGED if it moved), and PutAccount forgets what it changes."""

from __future__ import annotations

import uuid

from services.credits.unit_of_work import CreditsUnitOfWork
from services.credits.use_cases.accounts import get_account


class OfficeCurrencies:
    """Offices' currencies, by (company, office)."""

    def __init__(self) -> None:
        self._known: dict[tuple[uuid.UUID, uuid.UUID], str] = {}

    async def currency_of(
        self, company_id: uuid.UUID, office_id: uuid.UUID, uow: CreditsUnitOfWork
    ) -> str:
        known = self._known.get((company_id, office_id))
        if known is None:
            office = await get_account(company_id, office_id, uow)
            known = self._known[(company_id, office_id)] = office.currency
        return known

    def forget(self, company_id: uuid.UUID, office_id: uuid.UUID) -> None:
        self._known.pop((company_id, office_id), None)
