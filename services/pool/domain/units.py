"""What may happen to a unit in each state (docs/product.md, "License units and their
states"), and who pays for it.

- Only ASSIGNED or SPARE units can be returned; only ASSIGNED units reassigned.
- ASSIGNED and HELD units are in use: they cannot be terminated, and one of them in a
  termination refuses the whole call. A unit already TERMINATED stays as it is.
- A returned unit goes to the pool (with the grace period) when its type is poolable and
  its currency's pool is on, else it is SPARE in its office (`allocation.return_destination`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.pool.domain import allocation, errors
from services.pool.domain.model import Unit, UnitCount, UnitState

RETURNABLE = frozenset({UnitState.ASSIGNED, UnitState.SPARE})
IN_USE = frozenset({UnitState.ASSIGNED, UnitState.HELD})


def check_all_found(unit_ids: Collection[uuid.UUID], units: Sequence[Unit]) -> None:
    missing = set(unit_ids) - {u.unit_id for u in units}
    if missing:
        raise errors.units_not_found(missing)


def check_reassignable(units: Sequence[Unit]) -> None:
    for unit in units:
        if unit.state is not UnitState.ASSIGNED:
            raise errors.not_assigned(unit.unit_id, unit.state)


def check_returnable(units: Sequence[Unit]) -> None:
    for unit in units:
        if unit.state not in RETURNABLE:
            raise errors.not_returnable(unit.unit_id, unit.state)


def check_terminable(units: Sequence[Unit]) -> None:
    for unit in units:
        if unit.state in IN_USE:
            raise errors.unit_in_use(unit.unit_id, unit.state)


def to_terminate(units: Sequence[Unit]) -> list[uuid.UUID]:
    """The units a termination changes (terminated ones stay as they are)."""
    return [u.unit_id for u in units if u.state is not UnitState.TERMINATED]


@dataclass(frozen=True, slots=True)
class Returns:
    """Where the returned units of one currency go."""

    to_pool: list[uuid.UUID] = field(default_factory=list)
    to_spare: list[uuid.UUID] = field(default_factory=list)  # SPARE units stay where they are

    @property
    def moving(self) -> int:
        return len(self.to_pool) + len(self.to_spare)


def returns(units: Sequence[Unit], pool_enabled: bool, poolable: Collection[str]) -> Returns:
    """Sorts returned units (of one currency) by destination."""
    sorted_out = Returns()
    for unit in units:
        destination = allocation.return_destination(pool_enabled, unit.license_type in poolable)
        if destination is UnitState.POOLED:
            sorted_out.to_pool.append(unit.unit_id)
        elif unit.state is UnitState.ASSIGNED:
            sorted_out.to_spare.append(unit.unit_id)
    return sorted_out


class Payer(enum.Enum):
    """Whose plan pays for a unit, as the pool sees it."""

    OFFICE = "the owning office's plan"
    POOL = "the pool's: billing charges the oldest active plan of the currency"


def payer(state: UnitState, held_from: UnitState | None) -> Payer | None:
    """SPARE, ASSIGNED and REMOVAL_SCHEDULED units are their office's, POOLED units the
    pool's; a HELD unit is paid for where it was before its hold; TERMINATED: nobody."""
    if state is UnitState.HELD:
        assert held_from is not None, "a held unit always knows where it was"
        return payer(held_from, None)
    if state is UnitState.POOLED:
        return Payer.POOL
    if state is UnitState.TERMINATED:
        return None
    return Payer.OFFICE


@dataclass(frozen=True, slots=True)
class OfficeLine:
    """Units of one type on one office's bill, by state."""

    office_id: uuid.UUID
    currency: str
    license_type: str
    counts: dict[UnitState, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolLine:
    """Units of one type on the pool's bill: resting in it, and held from it."""

    currency: str
    license_type: str
    pooled: int
    held: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every live unit of a company on exactly one line, as of one instant."""

    taken_at: datetime
    office_lines: tuple[OfficeLine, ...]
    pool_lines: tuple[PoolLine, ...]
    live_units: int


def snapshot(taken_at: datetime, counts: Sequence[UnitCount]) -> Snapshot:
    """The lines of a snapshot from counts by office, type, state and held-from state
    (in the order the counts come: by currency, office, type)."""
    offices: dict[tuple[uuid.UUID, str, str], OfficeLine] = {}
    pools: dict[tuple[str, str], list[int]] = {}
    live = 0
    for count in counts:
        pays = payer(count.state, count.held_from)
        if pays is None:
            continue
        live += count.count
        if pays is Payer.POOL:
            line = pools.setdefault((count.currency, count.license_type), [0, 0])
            line[1 if count.state is UnitState.HELD else 0] += count.count
            continue
        key = (count.office_id, count.currency, count.license_type)
        office_line = offices.setdefault(key, OfficeLine(*key))
        office_line.counts[count.state] = office_line.counts.get(count.state, 0) + count.count
    return Snapshot(
        taken_at,
        tuple(offices.values()),
        tuple(PoolLine(c, t, p, h) for (c, t), (p, h) in sorted(pools.items())),
        live,
    )
