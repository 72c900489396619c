"""Pools: switching one on (`EnablePool`, one-way), what it holds, and what an office
could take now (`GetAvailability`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from libs.common.license_catalog import catalog
from services.pool.domain import allocation, events, pools
from services.pool.domain.history import NO_CAUSE, Cause
from services.pool.domain.model import Availability, PlanKind, Pool, PoolContent, Unit, UnitState
from services.pool.unit_of_work import PoolUnitOfWork, Tx
from services.pool.use_cases.offices import office_of


@dataclass(frozen=True, slots=True)
class EnablePool:
    company_id: uuid.UUID
    currency: str
    cause: Cause = NO_CAUSE


@dataclass(frozen=True, slots=True)
class Enabled:
    """The pool, the spare units that moved (or would move) into it, and every office of
    the currency (all of them take part)."""

    pool: Pool
    moved: tuple[Unit, ...]
    office_ids: tuple[uuid.UUID, ...]


async def _check_enable(command: EnablePool, tx: Tx) -> tuple[datetime, tuple[uuid.UUID, ...]]:
    """Takes the lock and refuses what enabling refuses; returns the instant and the
    offices that take part."""
    now = await tx.locks.take(command.company_id, command.currency)
    pool = await tx.pools.get(command.company_id, command.currency)
    legacy = await tx.offices.of_currency(command.company_id, command.currency, PlanKind.LEGACY)
    pools.check_enable(pool, legacy)
    return now, tuple(await tx.offices.of_currency(command.company_id, command.currency))


async def enable_pool(command: EnablePool, tx: Tx) -> Enabled:
    """Every spare unit of a poolable type in the currency enters the pool, claimable at
    once (docs/product.md, "Pools")."""
    now, office_ids = await _check_enable(command, tx)
    pool = await tx.pools.insert(command.company_id, command.currency, now)
    moved = await tx.units.move_into_pool(
        command.company_id,
        command.currency,
        pools.poolable_types(catalog()),
        allocation.claimable_at_on_enable(now),
        command.cause,
    )
    tx.events.publish(
        command.company_id,
        events.POOL_ENABLED,
        {"currency": command.currency, "pooled_unit_ids": events.ids(u.unit_id for u in moved)},
    )
    return Enabled(pool, tuple(moved), office_ids)


async def preview_enable(uow: PoolUnitOfWork, command: EnablePool) -> Enabled:
    """What enabling would do (`validate_only`), changing nothing: the same refusals,
    and the units that would move as they would be."""
    async with uow.transaction() as tx:
        now, office_ids = await _check_enable(command, tx)
        spare = await tx.units.spare_of_currency(
            command.company_id, command.currency, pools.poolable_types(catalog())
        )
    claimable_at = allocation.claimable_at_on_enable(now)
    moved = tuple(
        replace(u, state=UnitState.POOLED, returned_at=now, claimable_at=claimable_at)
        for u in spare
    )
    return Enabled(Pool(command.company_id, command.currency, None), moved, office_ids)


async def disable_pool(uow: PoolUnitOfWork, company_id: uuid.UUID, currency: str) -> None:
    """Always refused: enabling is irreversible, and a pool never enabled has nothing to
    disable."""
    async with uow.reading() as tx:
        pool = await tx.pools.get(company_id, currency)
    raise pools.disable_refusal(pool)


async def get_pool(
    uow: PoolUnitOfWork, company_id: uuid.UUID, currency: str
) -> tuple[Pool, list[PoolContent]]:
    """The pool, and per type its units claimable now and still in grace."""
    async with uow.reading() as tx:
        now = await tx.locks.now()
        pool = await tx.pools.get(company_id, currency)
        return pool, await tx.pools.contents(company_id, currency, now)


@dataclass(frozen=True, slots=True)
class GetAvailability:
    company_id: uuid.UUID
    office_id: uuid.UUID
    license_types: tuple[str, ...]  # empty: every type the office has any of


async def availability(
    uow: PoolUnitOfWork, query: GetAvailability
) -> tuple[datetime, Sequence[Availability]]:
    """What the office could take now per type, judged at one instant by the grace rule."""
    async with uow.reading() as tx:
        office = await office_of(tx, query.company_id, query.office_id)
        now = await tx.locks.now()
        return now, await tx.units.availability(office, query.license_types, now)
