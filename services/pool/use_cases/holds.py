"""Holds: the second phase of a reservation (`Commit`, `Release`), and their expiry.

Which resolution a call makes is decided by `domain/holds.py` on the hold as it is under
its (company, currency) lock; the repository's update of the PENDING row is the database's
guarantee that a hold resolves once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from libs.common import metrics
from libs.common.errors import required
from services.pool.domain import errors, events, holds
from services.pool.domain.history import NO_CAUSE, Cause
from services.pool.domain.model import Assignee, Hold, HoldState, Unit
from services.pool.unit_of_work import PoolUnitOfWork, Tx


@dataclass(frozen=True, slots=True)
class Commit:
    company_id: uuid.UUID
    hold_id: uuid.UUID
    assignees: tuple[Assignee, ...]  # none, or one per held unit
    cause: Cause = NO_CAUSE


@dataclass(frozen=True, slots=True)
class Release:
    company_id: uuid.UUID
    hold_id: uuid.UUID
    cause: Cause = NO_CAUSE


@dataclass(frozen=True, slots=True)
class Committed:
    hold: Hold
    units: tuple[Unit, ...]


async def get_hold(uow: PoolUnitOfWork, company_id: uuid.UUID, hold_id: uuid.UUID) -> Hold:
    async with uow.reading() as tx:
        return await _hold(tx, company_id, hold_id)


async def _hold(tx: Tx, company_id: uuid.UUID, hold_id: uuid.UUID) -> Hold:
    return required(await tx.holds.get(company_id, hold_id), errors.hold_not_found, hold_id)


async def _locked(tx: Tx, company_id: uuid.UUID, hold_id: uuid.UUID) -> tuple[Hold, datetime]:
    """The hold as it is under its (company, currency) lock, and the instant."""
    currency = (await _hold(tx, company_id, hold_id)).currency
    now = await tx.locks.take(company_id, currency)
    return await _hold(tx, company_id, hold_id), now


async def _resolve(tx: Tx, hold: Hold, state: HoldState, now: datetime) -> Hold:
    resolved = await tx.holds.resolve(hold.company_id, [hold.hold_id], state, now)
    if not resolved:  # the lock is held: nothing else resolves it meanwhile
        raise errors.concurrent_change()
    return resolved[0]


async def commit(command: Commit, tx: Tx) -> Committed:
    """Held units become the hold's office's: ASSIGNED (one assignee each, in unit-id
    order) or SPARE. A PENDING hold past its expiry raises `HoldLapsed`: the caller
    expires it (`HoldExpiry.expire_lapsed`) once this transaction is rolled back."""
    hold, now = await _locked(tx, command.company_id, command.hold_id)
    holds.check_commit(hold, now, len(command.assignees))
    committed = await _resolve(tx, hold, HoldState.COMMITTED, now)
    if command.assignees:
        moved = await tx.holds.commit_assigned(committed, command.assignees, now, command.cause)
    else:
        moved = await tx.holds.commit_spare(committed, now, command.cause)
    tx.events.publish(committed.company_id, events.HOLD_COMMITTED, events.hold(committed))
    return Committed(committed, tuple(moved))


async def release(command: Release, tx: Tx) -> Hold:
    """Held units go back exactly as they were. A hold already released or expired is
    answered as it is; a committed one cannot be released."""
    hold, now = await _locked(tx, command.company_id, command.hold_id)
    resolution = holds.release_resolution(hold, now)
    if resolution is None:
        return hold
    resolved = await _resolve(tx, hold, resolution, now)
    await tx.holds.restore_units(hold.company_id, [hold.hold_id], resolution, now, command.cause)
    tx.events.publish(resolved.company_id, events.hold_ended(resolved), events.hold(resolved))
    return resolved


class HoldExpiry:
    """Expires holds whose time is up (the sweeper of every replica runs `expire_due`),
    and purges request ids past their retention."""

    def __init__(self, uow: PoolUnitOfWork, retention_hours: int) -> None:
        self._uow = uow
        self._retention_hours = retention_hours

    async def expire(
        self, company_id: uuid.UUID, currency: str, hold_ids: Sequence[uuid.UUID]
    ) -> int:
        """Expires those of the holds that are due; returns how many."""
        async with self._uow.transaction() as tx:
            now = await tx.locks.take(company_id, currency)
            found = await tx.holds.get_many(company_id, hold_ids)
            due = [h.hold_id for h in found if holds.is_due(h, now)]
            if not due:
                return 0
            expired = await tx.holds.resolve(company_id, due, HoldState.EXPIRED, now)
            await tx.holds.restore_units(
                company_id, [h.hold_id for h in expired], HoldState.EXPIRED, now, NO_CAUSE
            )
            for hold in expired:
                tx.events.publish(company_id, events.HOLD_EXPIRED, events.hold(hold))
        metrics.holds_expired.add(len(expired))  # committed
        return len(expired)

    async def expire_lapsed(self, lapsed: errors.HoldLapsed) -> None:
        """Expires the hold a commit found lapsed, so its units are back when the caller
        hears HOLD_EXPIRED."""
        await self.expire(lapsed.hold.company_id, lapsed.hold.currency, [lapsed.hold.hold_id])

    async def expire_due(self, limit: int = 500) -> int:
        """Expires up to `limit` holds whose time is up; returns how many."""
        async with self._uow.reading() as tx:
            due = await tx.holds.due(await tx.locks.now(), limit)
        groups: dict[tuple[uuid.UUID, str], list[uuid.UUID]] = {}
        for hold_id, company_id, currency in due:
            groups.setdefault((company_id, currency), []).append(hold_id)
        expired = 0
        for (company_id, currency), hold_ids in groups.items():
            expired += await self.expire(company_id, currency, hold_ids)
        return expired

    async def expire_all_due(self) -> int:
        """Expires due holds until none is left (a sweep)."""
        total = 0
        while (expired := await self.expire_due()) > 0:
            total += expired
        return total

    async def purge_request_ids(self) -> int:
        """Drops request ids past their retention (the sweeper does it hourly)."""
        async with self._uow.reading() as tx:
            return await tx.housekeeping.purge_request_ids(self._retention_hours)
