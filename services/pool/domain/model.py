"""What the pool service keeps: offices, units, holds, receipts (docs/product.md,
"Companies, offices and plans", "License units and their states", "Holds")."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta


class PlanKind(enum.StrEnum):
    """Only bundle plans take part in pools."""

    BUNDLE = "BUNDLE"
    LEGACY = "LEGACY"
    NONE = "NONE"  # no active plan (billing deactivated it): outside the legacy rules


class UnitState(enum.StrEnum):
    """A unit is in exactly one state."""

    SPARE = "SPARE"
    ASSIGNED = "ASSIGNED"
    POOLED = "POOLED"
    HELD = "HELD"
    REMOVAL_SCHEDULED = "REMOVAL_SCHEDULED"
    TERMINATED = "TERMINATED"


class HoldState(enum.StrEnum):
    """A hold resolves at most once: committed, released or expired."""

    PENDING = "PENDING"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class Source(enum.StrEnum):
    """Where allocated units come from; see `allocation.ALLOCATION_ORDER`."""

    OWN_SPARE = "OWN_SPARE"
    OWN_RETURN_IN_GRACE = "OWN_RETURN_IN_GRACE"
    POOL = "POOL"


class PassOverReason(enum.StrEnum):
    """Why units that exist in the company were not taken."""

    IN_GRACE = "IN_GRACE"
    HELD = "HELD"
    NON_POOLABLE = "NON_POOLABLE"
    OTHER_CURRENCY = "OTHER_CURRENCY"
    POOL_DISABLED = "POOL_DISABLED"
    OTHER_OFFICE_SPARE = "OTHER_OFFICE_SPARE"


@dataclass(frozen=True, slots=True)
class Office:
    company_id: uuid.UUID
    office_id: uuid.UUID
    currency: str
    plan_kind: PlanKind
    primary: bool
    display_name: str = ""  # for people; PutOffice without one keeps the stored name
    created_at: datetime | None = None  # set by the store


@dataclass(frozen=True, slots=True)
class Assignee:
    """What holds an assigned unit: a kind (user, fax line, ...) and its id."""

    kind: str
    id: str


@dataclass(frozen=True, slots=True)
class Unit:
    unit_id: uuid.UUID
    company_id: uuid.UUID
    office_id: uuid.UUID  # the owner; for POOLED units, the office that returned it
    currency: str
    license_type: str
    state: UnitState
    assignee: Assignee | None
    returned_at: datetime | None
    claimable_at: datetime | None
    hold_id: uuid.UUID | None
    held_from: UnitState | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: uuid.UUID
    company_id: uuid.UUID
    office_id: uuid.UUID
    currency: str
    license_type: str
    state: HoldState
    unit_ids: tuple[uuid.UUID, ...]
    expires_at: datetime
    receipt_id: uuid.UUID
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class SourceTake:
    source: Source
    unit_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class PassedOver:
    reason: PassOverReason
    quantity: int
    earliest_claimable_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an allocation took from where, and what it passed over and why."""

    receipt_id: uuid.UUID | None  # None: a failed allocation, which is not stored
    company_id: uuid.UUID
    office_id: uuid.UUID
    currency: str
    license_type: str
    requested: int
    taken: tuple[SourceTake, ...]
    shortfall: int  # what no source could give (a failed allocation takes nothing)
    passed_over: tuple[PassedOver, ...]
    hold_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Pool:
    company_id: uuid.UUID
    currency: str
    enabled_at: datetime | None

    @property
    def enabled(self) -> bool:
        return self.enabled_at is not None


@dataclass(frozen=True, slots=True)
class PoolContent:
    """Pooled units of one type: claimable now, and still in their grace period."""

    license_type: str
    claimable: int
    in_grace: int


@dataclass(frozen=True, slots=True)
class Availability:
    """What an office could take of one type now, and what it has scheduled for removal."""

    license_type: str
    own_spare: int
    own_in_grace: int
    pool_claimable: int
    removal_scheduled: int


@dataclass(frozen=True, slots=True)
class UnitCount:
    """How many units of one office and type are in one state (a snapshot's raw count)."""

    office_id: uuid.UUID
    currency: str
    license_type: str
    state: UnitState
    held_from: UnitState | None
    count: int


@dataclass(frozen=True, slots=True)
class Terms:
    """The pool's configured periods (settings): how long a return stays its office's
    alone, how long a hold lasts by default and at most, and how far back unit history
    (and snapshots as of a past instant) reach."""

    grace: timedelta
    hold_default: timedelta
    hold_max: timedelta
    history_retention: timedelta = timedelta(days=400)
