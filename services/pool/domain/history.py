"""Unit history (docs/product.md, "Unit history and as-of snapshots"): every change of a
unit is an event, written in the transaction of the change, with the unit's state after
it and why it happened; an as-of snapshot counts each unit as its last event left it.

- An event records the unit's state, office and held-from state after the change: what
  a snapshot counts (`domain/units.snapshot`). Units never change company, currency or
  license type, so those are the unit's.
- Events are stamped with the transaction's instant, which writers of a (company,
  currency) take when they are granted its lock; so a unit's events are in the order of
  their ids and of their instants.
- As-of snapshots reach back as far as the retention (`POOL_HISTORY_RETENTION_DAYS`) and
  the company's horizon (when history started for units that existed before it), and
  not into the future.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.common.errors import DomainError
from libs.common.reasons import Reason
from services.pool.domain.model import Assignee, Source, UnitState


class EventKind(enum.StrEnum):
    """What happened to a unit, named after the call that did it."""

    RECORDED = "RECORDED"  # the unit existed when history started: its state then
    CREATED = "CREATED"  # AddUnits: SPARE in the office
    ACQUIRED = "ACQUIRED"  # Acquire: ASSIGNED to the office, through a receipt
    RESERVED = "RESERVED"  # Reserve: HELD by a hold for an office, through a receipt
    COMMITTED = "COMMITTED"  # Commit: the hold's office's, ASSIGNED or SPARE
    RELEASED = "RELEASED"  # Release: back as it was before the hold
    EXPIRED = "EXPIRED"  # hold expiry: back as it was before the hold
    REASSIGNED = "REASSIGNED"  # ReassignUnits: another assignee, same office
    RETURNED = "RETURNED"  # ReturnUnits: POOLED (claimable from claimable_at) or SPARE
    POOLED = "POOLED"  # EnablePool: SPARE units (and held ones' origin) enter the pool
    REMOVAL_SCHEDULED = "REMOVAL_SCHEDULED"  # MarkForRemoval
    RESTORED = "RESTORED"  # RestoreFromRemoval: SPARE again
    TERMINATED = "TERMINATED"  # TerminateUnits


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a change happens: the request that made it, and for new units what they were
    created for (a purchase, an import: the caller says)."""

    request_id: str | None = None
    origin: str | None = None


NO_CAUSE = Cause()


@dataclass(frozen=True, slots=True)
class UnitEvent:
    """One change of one unit, and the unit as it left it."""

    event_id: int
    company_id: uuid.UUID
    unit_id: uuid.UUID
    occurred_at: datetime
    kind: EventKind
    state: UnitState
    office_id: uuid.UUID  # the unit's office after the change (POOLED: who returned it)
    held_from: UnitState | None
    for_office_id: uuid.UUID | None  # RESERVED: the office the hold is for
    source: Source | None  # ACQUIRED, RESERVED: where the allocation took it from
    assignee: Assignee | None
    claimable_at: datetime | None
    hold_id: uuid.UUID | None
    receipt_id: uuid.UUID | None
    request_id: str | None
    origin: str | None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Events of a company, of one unit or one office, in a time range, by time."""

    company_id: uuid.UUID
    unit_id: uuid.UUID | None
    office_id: uuid.UUID | None
    start: datetime | None  # inclusive
    end: datetime | None  # exclusive
    after: tuple[datetime, int] | None  # the page token: the last (instant, id) seen
    page_size: int


def earliest_as_of(now: datetime, retention: timedelta, horizon: datetime | None) -> datetime:
    """The earliest instant an as-of snapshot can be taken for: the retention back from
    now, and not before the company's history started."""
    earliest = now - retention
    return max(earliest, horizon) if horizon is not None else earliest


def check_as_of(as_of: datetime, now: datetime, earliest: datetime) -> None:
    """An as-of instant within [earliest, now]; else SNAPSHOT_TIME_OUT_OF_RANGE."""
    if earliest <= as_of <= now:
        return
    raise snapshot_time_out_of_range(as_of, earliest, now)


def snapshot_time_out_of_range(as_of: datetime, earliest: datetime, now: datetime) -> DomainError:
    when = "in the future" if as_of > now else "older than the history kept"
    return Reason.SNAPSHOT_TIME_OUT_OF_RANGE.error(
        f"as_of_time {as_of.isoformat()} is {when}: as-of snapshots reach from "
        f"{earliest.isoformat()} to now ({now.isoformat()})",
        {
            "as_of_time": as_of.isoformat(),
            "earliest_time": earliest.isoformat(),
            "latest_time": now.isoformat(),
        },
    )


def purge_before(now: datetime, retention: timedelta) -> datetime:
    """Events older than this instant may go, all but each unit's last one before it
    (its state at that instant), which goes too once the unit is terminated."""
    return now - retention
