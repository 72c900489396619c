"""The pool's domain events (`WatchEvents`): their types and what each one tells.

Each is published in the transaction of its change (`tx.events.publish`, see
`libs.common.outbox`); the facts are plain JSON, ids as strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from services.pool.domain.model import Hold, HoldState, Receipt

UNITS_ADDED = "pool.units.added"
UNITS_ACQUIRED = "pool.units.acquired"
UNITS_RESERVED = "pool.units.reserved"
HOLD_COMMITTED = "pool.hold.committed"
HOLD_RELEASED = "pool.hold.released"
HOLD_EXPIRED = "pool.hold.expired"
UNITS_REASSIGNED = "pool.units.reassigned"
UNITS_RETURNED = "pool.units.returned"
UNITS_REMOVAL_SCHEDULED = "pool.units.removal_scheduled"
UNITS_RESTORED = "pool.units.restored"
UNITS_TERMINATED = "pool.units.terminated"
POOL_ENABLED = "pool.pool.enabled"

TYPES = frozenset(
    {
        UNITS_ADDED,
        UNITS_ACQUIRED,
        UNITS_RESERVED,
        HOLD_COMMITTED,
        HOLD_RELEASED,
        HOLD_EXPIRED,
        UNITS_REASSIGNED,
        UNITS_RETURNED,
        UNITS_REMOVAL_SCHEDULED,
        UNITS_RESTORED,
        UNITS_TERMINATED,
        POOL_ENABLED,
    }
)


def ids(values: Iterable[uuid.UUID]) -> list[str]:
    return [str(v) for v in values]


def office_units(
    office_id: uuid.UUID, license_type: str, unit_ids: Iterable[uuid.UUID]
) -> dict[str, Any]:
    """Units of one office and type (added, scheduled for removal, restored)."""
    return {"office_id": str(office_id), "license_type": license_type, "unit_ids": ids(unit_ids)}


def allocated(receipt: Receipt, unit_ids: Iterable[uuid.UUID]) -> tuple[str, dict[str, Any]]:
    """An Acquire (units assigned) or a Reserve (units held): its type and facts."""
    data = office_units(receipt.office_id, receipt.license_type, unit_ids)
    data["receipt_id"] = str(receipt.receipt_id)
    if receipt.hold_id is None:
        return UNITS_ACQUIRED, data
    data["hold_id"] = str(receipt.hold_id)
    return UNITS_RESERVED, data


def hold(held: Hold) -> dict[str, Any]:
    """A hold that ended (committed, released, expired)."""
    data = office_units(held.office_id, held.license_type, held.unit_ids)
    data["hold_id"] = str(held.hold_id)
    return data


def hold_ended(ended: Hold) -> str:
    """The type of a hold's end: released, or expired (a release found it lapsed)."""
    return HOLD_EXPIRED if ended.state is HoldState.EXPIRED else HOLD_RELEASED


def units(unit_ids: Iterable[uuid.UUID]) -> dict[str, Any]:
    """Units named by id (reassigned, returned, terminated)."""
    return {"unit_ids": ids(unit_ids)}
