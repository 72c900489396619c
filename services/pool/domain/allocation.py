"""Allocation (docs/product.md, "Allocation"): which units an office may take, in which
order, and why not.

An office that needs N units of type T takes them from these sources, in this order
(`ALLOCATION_RULES`, the data the repository builds its candidate query from):

1. `OWN_SPARE`: the office's own SPARE units of type T, by unit id;
2. `OWN_RETURN_IN_GRACE`: units of type T the office itself returned to the pool that
   are still in their grace period (`claimable_at > now`): it takes back its own license,
   earliest `claimable_at` first;
3. `POOL`: POOLED units of type T of the office's currency with `claimable_at <= now`,
   oldest return first (only when the currency's pool is enabled and T is poolable).

What is still missing is the shortfall. `is_claimable` is the grace boundary every
source, count and query shares.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from services.pool.domain.model import (
    Hold,
    HoldState,
    Office,
    PassedOver,
    PassOverReason,
    Receipt,
    Source,
    SourceTake,
    Unit,
    UnitState,
)


class Grace(enum.Enum):
    """Where a pooled unit stands against its grace period."""

    IN_GRACE = "only the office that returned it may take it"
    CLAIMABLE = "any office of the currency may take it"


def is_claimable(claimable_at: datetime, now: datetime) -> bool:
    """A pooled unit may be claimed by any office from `claimable_at` on (inclusive)."""
    return claimable_at <= now


def grace_of(claimable_at: datetime, now: datetime) -> Grace:
    return Grace.CLAIMABLE if is_claimable(claimable_at, now) else Grace.IN_GRACE


class OrderKey(enum.Enum):
    """What units of one source are taken by, first to last."""

    UNIT_ID = "unit_id"
    CLAIMABLE_AT = "claimable_at"
    RETURNED_AT = "returned_at"


@dataclass(frozen=True, slots=True)
class SourceRule:
    """Which free units one source offers, and in which order it offers them."""

    source: Source
    own: bool  # the requesting office's own units (else any office's, in its currency)
    pooled: bool  # resting in the pool (else SPARE in their office)
    grace: Grace | None  # pooled units only: in grace, or claimable
    order: tuple[OrderKey, ...]


ALLOCATION_RULES: tuple[SourceRule, ...] = (
    SourceRule(Source.OWN_SPARE, own=True, pooled=False, grace=None, order=(OrderKey.UNIT_ID,)),
    SourceRule(
        Source.OWN_RETURN_IN_GRACE,
        own=True,
        pooled=True,
        grace=Grace.IN_GRACE,
        order=(OrderKey.CLAIMABLE_AT, OrderKey.UNIT_ID),
    ),
    SourceRule(
        Source.POOL,
        own=False,
        pooled=True,
        grace=Grace.CLAIMABLE,
        order=(OrderKey.RETURNED_AT, OrderKey.UNIT_ID),
    ),
)
ALLOCATION_ORDER: tuple[Source, ...] = tuple(rule.source for rule in ALLOCATION_RULES)
POOL_SOURCES = frozenset(rule.source for rule in ALLOCATION_RULES if rule.pooled)
RULES = {rule.source: rule for rule in ALLOCATION_RULES}


def rank(source: Source) -> int:
    """The place of a source in the allocation order (1 first)."""
    return ALLOCATION_ORDER.index(source) + 1


def offers(rule: SourceRule, unit: Unit, office: Office, license_type: str, now: datetime) -> bool:
    """Whether the source offers this unit to the office now (what the candidate query
    selects, said in Python)."""
    if unit.state not in (UnitState.SPARE, UnitState.POOLED) or unit.license_type != license_type:
        return False
    if unit.company_id != office.company_id or unit.currency != office.currency:
        return False
    if (unit.state is UnitState.POOLED) != rule.pooled:
        return False
    if rule.own and unit.office_id != office.office_id:
        return False
    if rule.grace is not None:
        assert unit.claimable_at is not None, "a pooled unit always has its claimable_at"
        return grace_of(unit.claimable_at, now) is rule.grace
    return True


def order_of(rule: SourceRule, unit: Unit) -> tuple[object, ...]:
    """The sort key of a unit within its source."""
    return tuple(getattr(unit, key.value) for key in rule.order)


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
    """Where an unassigned unit goes: the pool, or SPARE in its office."""
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


def refused(need: Need, shortfall: int) -> bool:
    """All or nothing: an allocation that falls short fails, unless it allows partial."""
    return shortfall > 0 and not need.allow_partial


def receipt(
    office: Office,
    license_type: str,
    need: Need,
    taken: Sequence[tuple[uuid.UUID, Source]],
    shortfall: int,
    passed: tuple[PassedOver, ...],
    ids: tuple[uuid.UUID, uuid.UUID | None],
    now: datetime,
) -> Receipt:
    """The receipt of one allocation; `ids` are its receipt's and its hold's (a receipt
    is kept only when units were taken)."""
    receipt_id, hold_id = ids
    return Receipt(
        receipt_id=receipt_id if taken else None,
        company_id=office.company_id,
        office_id=office.office_id,
        currency=office.currency,
        license_type=license_type,
        requested=need.quantity,
        taken=by_source(taken),
        shortfall=shortfall,
        passed_over=passed,
        hold_id=hold_id if taken else None,
        created_at=now,
    )


def hold(receipt: Receipt, ttl: timedelta) -> Hold | None:
    """The hold of a reservation: none when it took nothing."""
    if receipt.hold_id is None or receipt.receipt_id is None:
        return None
    return Hold(
        hold_id=receipt.hold_id,
        company_id=receipt.company_id,
        office_id=receipt.office_id,
        currency=receipt.currency,
        license_type=receipt.license_type,
        state=HoldState.PENDING,
        unit_ids=tuple(sorted(u for take in receipt.taken for u in take.unit_ids)),
        expires_at=receipt.created_at + ttl,
        receipt_id=receipt.receipt_id,
        created_at=receipt.created_at,
        resolved_at=None,
    )
