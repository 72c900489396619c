"""What provisioning knows of its peers' answers: pool units, holds and availability, as
plain values (the gateways in `adapters/` build them from the wire)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


class AssigneeKind(enum.IntEnum):
    """Who a pool unit is assigned to (the pool's assignee kinds we use; the values are
    the pool's, and are stored as such in pool operation records)."""

    USER = 1
    BASE_LICENSE = 4


class HoldState(enum.StrEnum):
    PENDING = "PENDING"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class PoolUnit:
    unit_id: uuid.UUID
    license_type: str
    office_id: uuid.UUID
    state: str  # "SPARE", "ASSIGNED", ... (the pool's unit state without its prefix)
    assignee_id: str
    currency: str = ""
    claimable_at: datetime | None = None  # POOLED: when other offices may claim it

    @property
    def in_use(self) -> bool:
        """Assigned, or held for someone: a unit in use cannot be terminated."""
        return self.state in ("ASSIGNED", "HELD")


@dataclass(frozen=True, slots=True)
class Reserved:
    hold_id: uuid.UUID | None
    unit_ids: tuple[uuid.UUID, ...]  # sorted: the order Commit pairs them with assignees
    shortfall: int
    # Where the held units came from, one allocation source per unit in allocation order
    # ("OWN_SPARE", "OWN_RETURN_IN_GRACE", "POOL").
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Availability:
    """Units an office could get now, per license type, as the pool judges them (its
    grace rule decides which returns are still the office's own)."""

    own_spare: dict[str, int]
    own_returns_in_grace: dict[str, int]
    pool_claimable: dict[str, int]
