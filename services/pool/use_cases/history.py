"""Unit history (`ListUnitEvents`), snapshots as of an instant in the past (`GetSnapshot`
with `as_of_time`), and the purge of history past its retention.

The events themselves are written by the statements that change units
(`repository/history.recorded`); what an as-of snapshot may reach is decided in
`domain/history.py`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.pool.domain import history, units
from services.pool.domain.history import EventQuery, UnitEvent
from services.pool.domain.units import Snapshot
from services.pool.unit_of_work import PoolUnitOfWork
from services.pool.use_cases.offices import office_of

PURGE_BATCH = 10_000


async def list_events(uow: PoolUnitOfWork, query: EventQuery) -> list[UnitEvent]:
    """A page of events by instant (then id), and the first of the next page if any.
    A unit or office of another company is NOT_FOUND, like any id of another tenant."""
    async with uow.reading() as tx:
        if query.unit_id is not None:
            found = await tx.units.by_id(query.company_id, [query.unit_id])
            units.check_all_found([query.unit_id], found)
        if query.office_id is not None:
            await office_of(tx, query.company_id, query.office_id)
        return await tx.history.page(query)


async def snapshot_as_of(
    uow: PoolUnitOfWork,
    company_id: uuid.UUID,
    currency: str | None,
    as_of: datetime,
    retention: timedelta,
) -> Snapshot:
    """The company's snapshot as it was at `as_of`, from each unit's last event by then;
    SNAPSHOT_TIME_OUT_OF_RANGE outside the history kept or in the future."""
    async with uow.reading() as tx:
        now = await tx.locks.now()
        earliest = history.earliest_as_of(now, retention, await tx.history.horizon(company_id))
        history.check_as_of(as_of, now, earliest)
        counts = await tx.history.counts_as_of(company_id, currency, as_of)
    return units.snapshot(as_of, counts)


async def purge_history(uow: PoolUnitOfWork, retention: timedelta) -> int:
    """Drops the events no as-of snapshot within the retention needs; returns how many."""
    total = 0
    while True:
        async with uow.reading() as tx:
            before = history.purge_before(await tx.locks.now(), retention)
            purged = await tx.history.purge(before, PURGE_BATCH)
        total += purged
        if purged < PURGE_BATCH:
            return total
