"""Allocation (SPEC §7-§8): which units an office may take, in which order, and why not.

An office that needs N units of type T takes them from these sources, in this order:

1. `OWN_SPARE`: the office's own SPARE units of type T;
2. `OWN_RETURN_IN_GRACE`: units of type T the office itself returned to the pool that
   are still in their grace period (`claimable_at > now`): it takes back its own license;
3. `POOL`: POOLED units of type T of the office's currency with `claimable_at <= now`,
   oldest return first (only when the currency's pool is enabled and T is poolable).

What is still missing is the shortfall. The repository implements each source as a query
with exactly these predicates; `is_claimable` is the grace boundary they share.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from services.pool.domain.model import PassedOver, PassOverReason, Source, SourceTake, UnitState

ALLOCATION_ORDER: tuple[Source, ...] = (Source.OWN_SPARE, Source.OWN_RETURN_IN_GRACE, Source.POOL)
POOL_SOURCES = frozenset({Source.OWN_RETURN_IN_GRACE, Source.POOL})


def is_claimable(claimable_at: datetime, now: datetime) -> bool:
    """A pooled unit may be claimed by any office from `claimable_at` on (inclusive)."""
    return claimable_at <= now


def sources_to_try(
    requested: Collection[Source], pool_enabled: bool, poolable: bool
) -> tuple[Source, ...]:
    """The sources an allocation tries, in order. An empty `requested` means all."""
    pooling = pool_enabled and poolable
    return tuple(
        source
        for source in ALLOCATION_ORDER
        if (not requested or source in requested) and (pooling or source not in POOL_SOURCES)
    )


def return_destination(pool_enabled: bool, poolable: bool) -> UnitState:
    """Where an unassigned unit goes: the pool, or SPARE in its office (SPEC §7)."""
    return UnitState.POOLED if pool_enabled and poolable else UnitState.SPARE


def claimable_at_on_return(now: datetime, grace: timedelta) -> datetime:
    """A returned unit waits out the grace period before other offices may claim it."""
    return now + grace


def claimable_at_on_enable(now: datetime) -> datetime:
    """Spare units entering a newly enabled pool are claimable at once."""
    return now


@dataclass(frozen=True, slots=True)
class Bystanders:
    """Units of the requested type that exist in the company but are no candidates."""

    other_office_spare: int = 0  # same currency, SPARE in another office
    other_office_in_grace: int = 0  # same currency, pooled by another office, in grace
    earliest_claimable_at: datetime | None = None
    held: int = 0  # same currency, HELD by any hold
    other_currency: int = 0  # SPARE or POOLED in another currency


def passed_over(
    bystanders: Bystanders, pool_enabled: bool, poolable: bool
) -> tuple[PassedOver, ...]:
    """What a receipt says was passed over, and why."""
    reasons: list[PassedOver] = []
    if bystanders.other_office_in_grace:
        reasons.append(
            PassedOver(
                PassOverReason.IN_GRACE,
                bystanders.other_office_in_grace,
                bystanders.earliest_claimable_at,
            )
        )
    if bystanders.held:
        reasons.append(PassedOver(PassOverReason.HELD, bystanders.held))
    if bystanders.other_office_spare:
        if not poolable:
            reason = PassOverReason.NON_POOLABLE
        elif not pool_enabled:
            reason = PassOverReason.POOL_DISABLED
        else:
            reason = PassOverReason.OTHER_OFFICE_SPARE
        reasons.append(PassedOver(reason, bystanders.other_office_spare))
    if bystanders.other_currency:
        reasons.append(PassedOver(PassOverReason.OTHER_CURRENCY, bystanders.other_currency))
    return tuple(reasons)


def needs_explanation(shortfall: int) -> bool:
    """Passed-over units are looked up when an allocation falls short: that is when the
    caller needs to know why (pay for new units, wait for a grace period, free a hold).
    A satisfied allocation skips the lookup, which keeps the hot path one statement."""
    return shortfall > 0


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Need:
    """One allocation request: how many units, and whether fewer will do."""

    quantity: int
    allow_partial: bool


def distribute(candidates: Sequence[T], needs: Sequence[Need]) -> list[tuple[list[T], int]]:
    """Hands candidates out in request order: per request, its units and its shortfall.

    A request that cannot be met in full takes nothing, unless it allows partial, and
    leaves the candidates to the requests after it.
    """
    handed: list[tuple[list[T], int]] = []
    cursor = 0
    for need in needs:
        left = len(candidates) - cursor
        take = need.quantity if left >= need.quantity else (left if need.allow_partial else 0)
        handed.append(
            (list(candidates[cursor : cursor + take]), need.quantity - min(left, need.quantity))
        )
        cursor += take
    return handed


def by_source(taken: Sequence[tuple[uuid.UUID, Source]]) -> tuple[SourceTake, ...]:
    """Units grouped by source, in allocation order."""
    groups: dict[Source, list[uuid.UUID]] = {}
    for unit_id, source in taken:
        groups.setdefault(source, []).append(unit_id)
    return tuple(
        SourceTake(source, tuple(groups[source])) for source in ALLOCATION_ORDER if source in groups
    )
