"""Removals (docs/product.md, "Removals and restores"): an office schedules spare units
for removal; they stay (and are billed) until the end of its plan's current cycle. The
close of the period that cycle belongs to terminates them, and no earlier close does
(offices have their own cycle anchors). A purchase restores scheduled removals first."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from services.billing.domain import cycles, errors
from services.billing.domain.invoicing import plan_of_office
from services.billing.domain.model import Plan, ScheduledUnit

# Units terminated per pool call when a cycle closes.
TERMINATION_BATCH = 1000


def check_removable(plan: Plan) -> None:
    """A contracted plan's licenses are removed by the account team, not here."""
    if plan.contracted:
        raise errors.contracted_plan(plan.plan_id)


def removal_at(plan: Plan, now: datetime) -> datetime:
    """When units scheduled now go: the end of the plan's current cycle."""
    return cycles.cycle_at(plan.start_at, now).end


def ends_by(plan: Plan | None, scheduled_at: datetime, period: str) -> bool:
    """Whether a unit scheduled at `scheduled_at` by an office paying on `plan` ends with
    the close of `period`: the cycle it was scheduled in belongs to that period or an
    earlier one. (Without a plan, or scheduled before it started, the calendar month
    stands in for the cycle.)"""
    if plan is None or scheduled_at < plan.start_at:
        return cycles.period_of(scheduled_at) <= period
    return cycles.period_of(cycles.cycle_at(plan.start_at, scheduled_at).start) <= period


def ending(scheduled: Sequence[ScheduledUnit], plans: Sequence[Plan], period: str) -> list[str]:
    """The units the close of `period` terminates: those whose office's cycle of
    removal has ended with that period; the others wait for their own period's close."""
    payers = {unit.office_id: plan_of_office(plans, unit.office_id) for unit in scheduled}
    return [
        unit.unit_id
        for unit in scheduled
        if ends_by(payers[unit.office_id], unit.scheduled_at, period)
    ]


def termination_batches(unit_ids: Sequence[str]) -> Iterator[list[str]]:
    """The units to terminate at a cycle's close, in a stable order, batch by batch (the
    batch is part of each call's request_id, so a retry replays the same calls)."""
    ordered = sorted(unit_ids)
    for start in range(0, len(ordered), TERMINATION_BATCH):
        yield ordered[start : start + TERMINATION_BATCH]
