"""An operation that takes pool units and then writes locally (creating a user, assigning
a license, adding add-ons, changing a user's license), kept as a durable record so that it
either completes or leaves the pool exactly as it was.

Its steps, each stored before the next one starts:

RESERVING  the record exists (written before the first pool call); the units are being
           held (`Reserve`). Nothing is decided yet: the operation can still be undone,
           and undoing means releasing the holds, which puts the units back exactly as
           they were (a pool unit keeps its place in the claim order).
WRITTEN    the local effect and the response are stored (one local transaction); the
           holds are still pending. Committing them is next.
DONE       every hold committed, the units it gives back returned, the response stored
           under the caller's request_id.
undone     the holds released and the local effect (if any) removed, and the record
           deleted with it (one local transaction): a request that was refused or undone
           leaves nothing behind. A retry of the same request_id is a new attempt, with a
           new random attempt id, so new pool request ids (the pool remembers a Reserve
           that succeeded and was then released: reusing its id would replay that hold).

The pivot is the first commit: before it, a failure undoes everything; after it, only an
outage can stop the operation, and a retry or the recovery finishes it. An operation whose
driver died (its lease ran out) is undone by the recovery if it was RESERVING, and
finished if it was WRITTEN (unless its holds expired meanwhile: then it is undone).
Every step is a compare-and-set on the record's attempt id: a driver whose attempt was
undone (its record deleted, or replaced by a new attempt) can change nothing.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Step(enum.StrEnum):
    RESERVING = "RESERVING"
    WRITTEN = "WRITTEN"
    DONE = "DONE"

    @property
    def on_recovery(self) -> Recovery:
        """What the recovery does with an operation whose driver died at this step."""
        return Recovery.UNDO if self is Step.RESERVING else Recovery.FINISH


class Recovery(enum.Enum):
    UNDO = "undo"  # nothing local was written: release the holds, delete the record
    FINISH = "finish"  # written: commit the holds (undone only if a hold expired)


UNFINISHED = frozenset({Step.RESERVING, Step.WRITTEN})


class OperationKind(enum.StrEnum):
    """Which use case an operation serves (it names the local undo and the response)."""

    CREATE_USER = "create_user"
    CHANGE_USER_LICENSE = "change_user_license"
    ASSIGN_LICENSE = "assign_license"
    ADD_ADDONS = "add_addons"


@dataclass(frozen=True, slots=True)
class Answered:
    """A request answered at once, without an operation (e.g. the license it asks for is
    the user's already): `result` is the kind's domain result."""

    kind: OperationKind
    result: Any


def derived_request_id(
    company_id: uuid.UUID, request_id: str, fingerprint: bytes, step: str
) -> str:
    """The pool (or billing) request_id of one step of a caller's request: same request,
    same payload, same id (so the peer replays it); another payload, another id."""
    digest = hashlib.sha256(f"{company_id}/{request_id}/".encode() + fingerprint).hexdigest()
    return f"prov-{digest[:40]}-{step}"


@dataclass(frozen=True, slots=True)
class Reservation:
    """Units of one license type to hold for the operation's office, one per assignee
    (the pool assignee kind and id each unit gets when the hold is committed)."""

    license_type: str
    assignees: tuple[tuple[int, str], ...]
    purchase_if_needed: bool = False  # buy the shortfall through billing, then hold

    @property
    def quantity(self) -> int:
        return len(self.assignees)


@dataclass(frozen=True, slots=True)
class Plan:
    """What an operation does in the pool, fixed before its first pool call."""

    kind: str  # which use case; names the local undo
    office_id: uuid.UUID
    reservations: tuple[Reservation, ...]
    returns: tuple[uuid.UUID, ...] = ()  # units given back once the holds are committed
    args: Mapping[str, str] = field(default_factory=dict)  # what the local undo needs


@dataclass(frozen=True, slots=True)
class Held:
    """A pending hold of one reservation; its unit ids sorted, the order in which the
    commit pairs them with the reservation's assignees."""

    hold_id: uuid.UUID
    unit_ids: tuple[uuid.UUID, ...]
    # Where the units came from (the pool's allocation sources), known to the driver that
    # held them, for the response it writes; not stored with the record.
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolOperation:
    company_id: uuid.UUID
    request_id: str
    fingerprint: bytes
    attempt: uuid.UUID  # random, one per attempt: the pool request ids derive from it
    step: Step
    plan: Plan
    # Which pool request ids hold the units: 0, or 1 once billing bought the shortfall.
    round: int
    holds: tuple[Held, ...]  # once WRITTEN, one per reservation
    response: bytes | None  # once WRITTEN
    lease_owner: uuid.UUID | None

    def request_id_of(self, step: str) -> str:
        """The peer request_id of one step of this attempt."""
        return f"prov-{self.attempt.hex}-{step}"

    def units(self, reservation: int) -> tuple[uuid.UUID, ...]:
        return self.holds[reservation].unit_ids
