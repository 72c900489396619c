"""Units: purchases arrive (`AddUnits`), change hands, come back, are scheduled for
removal, restored, terminated; and the counts billing invoices from (`GetSnapshot`).

Every change takes the (company, currency) lock of the units it changes, like allocation.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.common.currency import SUPPORTED_CURRENCIES
from libs.common.license_catalog import catalog
from services.pool.domain import allocation, errors, events, pools, units
from services.pool.domain.history import NO_CAUSE, Cause
from services.pool.domain.model import Assignee, Unit, UnitState
from services.pool.domain.units import Snapshot
from services.pool.unit_of_work import PoolUnitOfWork, Tx
from services.pool.use_cases.offices import office_of

# Changes this large refresh the planner's statistics at once (`refresh_statistics`).
BULK_CHANGE = 1000


@dataclass(frozen=True, slots=True)
class OfficeUnits:
    """N units of one type for an office (AddUnits, MarkForRemoval, RestoreFromRemoval)."""

    company_id: uuid.UUID
    office_id: uuid.UUID
    license_type: str
    quantity: int
    cause: Cause = NO_CAUSE  # what the units' history says made the change


@dataclass(frozen=True, slots=True)
class ReassignUnits:
    company_id: uuid.UUID
    reassignments: tuple[tuple[uuid.UUID, Assignee], ...]
    cause: Cause = NO_CAUSE


@dataclass(frozen=True, slots=True)
class ReturnUnits:
    company_id: uuid.UUID
    unit_ids: tuple[uuid.UUID, ...]
    grace: timedelta  # how long returns to the pool stay their office's alone
    cause: Cause = NO_CAUSE


@dataclass(frozen=True, slots=True)
class TerminateUnits:
    company_id: uuid.UUID
    unit_ids: tuple[uuid.UUID, ...]
    cause: Cause = NO_CAUSE


@dataclass(frozen=True, slots=True)
class ListUnits:
    company_id: uuid.UUID
    office_id: uuid.UUID | None
    currency: str | None
    license_type: str | None
    state: UnitState | None
    after: tuple[datetime, uuid.UUID] | None
    page_size: int


async def add_units(command: OfficeUnits, tx: Tx) -> list[Unit]:
    """Purchased units arrive SPARE in the office."""
    office = await office_of(tx, command.company_id, command.office_id)
    now = await tx.locks.take(command.company_id, office.currency)
    added = await tx.units.add(office, command.license_type, command.quantity, now, command.cause)
    _publish_office_units(tx, events.UNITS_ADDED, command, added)
    return added


async def mark_for_removal(command: OfficeUnits, tx: Tx) -> list[Unit]:
    """Exactly `quantity` SPARE units of the office become REMOVAL_SCHEDULED (terminated
    when the period closes), or none: NOT_ENOUGH_SPARE."""
    office = await office_of(tx, command.company_id, command.office_id)
    now = await tx.locks.take(command.company_id, office.currency)
    marked = await tx.units.mark_for_removal(
        office, command.license_type, command.quantity, now, command.cause
    )
    if len(marked) != command.quantity:
        raise errors.not_enough_spare(office.office_id, command.license_type, command.quantity)
    _publish_office_units(tx, events.UNITS_REMOVAL_SCHEDULED, command, marked)
    return marked


async def restore_from_removal(command: OfficeUnits, tx: Tx) -> list[Unit]:
    """Up to `quantity` units scheduled for removal become SPARE again."""
    office = await office_of(tx, command.company_id, command.office_id)
    now = await tx.locks.take(command.company_id, office.currency)
    restored = await tx.units.restore_from_removal(
        office, command.license_type, command.quantity, now, command.cause
    )
    _publish_office_units(tx, events.UNITS_RESTORED, command, restored)
    return restored


def _publish_office_units(
    tx: Tx, event_type: str, command: OfficeUnits, changed: Sequence[Unit]
) -> None:
    if changed:
        tx.events.publish(
            command.company_id,
            event_type,
            events.office_units(
                command.office_id, command.license_type, (u.unit_id for u in changed)
            ),
        )


async def refresh_statistics(uow: PoolUnitOfWork, changed: int | None = None) -> None:
    """After a bulk change (enabling a pool; `changed` new units, if at least
    BULK_CHANGE) the planner learns the new table sizes at once."""
    if changed is None or changed >= BULK_CHANGE:
        async with uow.reading() as tx:
            await tx.housekeeping.refresh_statistics()


async def _found(tx: Tx, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]) -> list[Unit]:
    found = await tx.units.by_id(company_id, unit_ids)
    units.check_all_found(unit_ids, found)
    return found


async def _lock_currencies(tx: Tx, company_id: uuid.UUID, found: Sequence[Unit]) -> datetime:
    """Takes the lock of every currency of the units, in one order (no deadlocks)."""
    return await tx.locks.take_all([(company_id, u.currency) for u in found])


async def reassign_units(command: ReassignUnits, tx: Tx) -> list[Unit]:
    """ASSIGNED units change hands within their office: no allocation, no return."""
    unit_ids = [unit_id for unit_id, _ in command.reassignments]
    found = await _found(tx, command.company_id, unit_ids)
    units.check_reassignable(found)
    now = await _lock_currencies(tx, command.company_id, found)
    changed = await tx.units.reassign(command.company_id, command.reassignments, now, command.cause)
    if changed != len(found):
        raise errors.concurrent_change()
    tx.events.publish(command.company_id, events.UNITS_REASSIGNED, events.units(unit_ids))
    return await tx.units.by_id(command.company_id, unit_ids)


async def return_units(command: ReturnUnits, tx: Tx) -> list[Unit]:
    """Units no longer used go to the pool with the grace period, or to SPARE."""
    found = await _found(tx, command.company_id, command.unit_ids)
    units.check_returnable(found)
    poolable = pools.poolable_types(catalog())
    for currency in sorted({u.currency for u in found}):
        now = await tx.locks.take(command.company_id, currency)
        pool = await tx.pools.get(command.company_id, currency)
        mine = [u for u in found if u.currency == currency]
        returns = units.returns(mine, pool.enabled, poolable)
        claimable_at = allocation.claimable_at_on_return(now, command.grace)
        moved = await tx.units.return_to_pool(
            command.company_id, returns.to_pool, now, claimable_at, command.cause
        ) + await tx.units.return_to_spare(command.company_id, returns.to_spare, now, command.cause)
        if moved != returns.moving:
            raise errors.concurrent_change()
    tx.events.publish(command.company_id, events.UNITS_RETURNED, events.units(command.unit_ids))
    return await tx.units.by_id(command.company_id, command.unit_ids)


async def terminate_units(command: TerminateUnits, tx: Tx) -> list[Unit]:
    """Units not in use become TERMINATED; a unit in use refuses the whole call."""
    found = await _found(tx, command.company_id, command.unit_ids)
    units.check_terminable(found)
    now = await _lock_currencies(tx, command.company_id, found)
    live = units.to_terminate(found)
    ended = await tx.units.terminate(command.company_id, live, now, command.cause)
    if len(ended) != len(live):
        raise errors.concurrent_change()
    if live:
        tx.events.publish(command.company_id, events.UNITS_TERMINATED, events.units(live))
    return await tx.units.by_id(command.company_id, command.unit_ids)


async def get_unit(uow: PoolUnitOfWork, company_id: uuid.UUID, unit_id: uuid.UUID) -> Unit:
    async with uow.reading() as tx:
        found = await tx.units.by_id(company_id, [unit_id])
    if not found:
        raise errors.units_not_found([unit_id])
    return found[0]


async def list_units(uow: PoolUnitOfWork, query: ListUnits) -> list[Unit]:
    """A page of units by creation, and the first of the next page if there is one."""
    async with uow.reading() as tx:
        return await tx.units.page(
            query.company_id,
            query.office_id,
            query.currency,
            query.license_type,
            query.state,
            query.after,
            query.page_size + 1,
        )


async def snapshot(uow: PoolUnitOfWork, company_id: uuid.UUID, currency: str | None) -> Snapshot:
    """Every live unit of the company on the line of whoever pays for it, as of one
    instant (docs/product.md, "License units and their states"), the instant its unit
    history gives the same counts for (`history.snapshot_as_of`)."""
    currencies = [currency] if currency else sorted(SUPPORTED_CURRENCIES)
    counts, taken_at = await uow.live_counts(company_id, currency, currencies)
    return units.snapshot(taken_at, counts)
