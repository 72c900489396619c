"""Removals (docs/product.md, "Removals and restores"): an office schedules spare units
for removal; they stay (and are billed) until the end of the plan's current cycle, when
closing the cycle terminates them. A purchase restores scheduled removals first."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from services.billing.domain import cycles, errors
from services.billing.domain.model import Plan

# Units terminated per pool call when a cycle closes.
TERMINATION_BATCH = 1000


def check_removable(plan: Plan) -> None:
    """A contracted plan's licenses are removed by the account team, not here."""
    if plan.contracted:
        raise errors.contracted_plan(plan.plan_id)


def removal_at(plan: Plan, now: datetime) -> datetime:
    """When units scheduled now go: the end of the plan's current cycle."""
    return cycles.cycle_at(plan.start_at, now).end


def termination_batches(unit_ids: Sequence[str]) -> Iterator[list[str]]:
    """The units to terminate at a cycle's close, in a stable order, batch by batch (the
    batch is part of each call's request_id, so a retry replays the same calls)."""
    ordered = sorted(unit_ids)
    for start in range(0, len(ordered), TERMINATION_BATCH):
        yield ordered[start : start + TERMINATION_BATCH]
