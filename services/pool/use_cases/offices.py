"""Offices: billing registers them (`PutOffice`); allocation routes by their currency."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from libs.common.errors import required
from services.pool.domain import errors, offices, pools
from services.pool.domain.model import Office
from services.pool.unit_of_work import PoolUnitOfWork, Tx


@dataclass(frozen=True, slots=True)
class ListOffices:
    company_id: uuid.UUID
    currency: str | None
    after: uuid.UUID | None
    page_size: int


async def put_office(office: Office, tx: Tx) -> Office:
    """Creates or updates an office (its id is its company's for good)."""
    offices.check_owner(office, await tx.offices.owner(office.office_id))
    await tx.locks.take(office.company_id, office.currency)
    current = await tx.offices.get(office.company_id, office.office_id)
    if offices.changes_currency(current, office):
        has_units = await tx.units.office_has_live_units(office.company_id, office.office_id)
        offices.check_currency_change(office, has_units)
    pools.check_plan(office, await tx.pools.get(office.company_id, office.currency))
    stored = await tx.offices.put(office)
    if stored is None:  # another company took the id meanwhile
        raise errors.office_not_found(office.office_id)
    return stored


async def get_office(uow: PoolUnitOfWork, company_id: uuid.UUID, office_id: uuid.UUID) -> Office:
    async with uow.reading() as tx:
        return await office_of(tx, company_id, office_id)


async def office_of(tx: Tx, company_id: uuid.UUID, office_id: uuid.UUID) -> Office:
    """The company's office, or OFFICE_NOT_FOUND."""
    return required(await tx.offices.get(company_id, office_id), errors.office_not_found, office_id)


async def list_offices(uow: PoolUnitOfWork, query: ListOffices) -> list[Office]:
    """A page of offices by id, and the first of the next page if there is one."""
    async with uow.stale_reading() as tx:
        return await tx.offices.page(
            query.company_id, query.currency, query.after, query.page_size + 1
        )


class OfficeDirectory:
    """Office facts by id, kept per process to route allocations to their (company,
    currency) writer. Allocation checks them again in its transaction (an office whose
    currency changed meanwhile is OFFICE_CHANGED); `forget` drops a changed office."""

    def __init__(self, uow: PoolUnitOfWork) -> None:
        self._uow = uow
        self._known: dict[tuple[uuid.UUID, uuid.UUID], Office] = {}

    async def get(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Office:
        office = self._known.get((company_id, office_id))
        if office is None:
            office = await get_office(self._uow, company_id, office_id)
            self._known[(company_id, office_id)] = office
        return office

    def forget(self, company_id: uuid.UUID, office_id: uuid.UUID) -> None:
        self._known.pop((company_id, office_id), None)
