"""Monthly billing cycles anchored at a plan's start (docs/product.md, "Money, currencies
and time").

Cycle k runs from `start + k months` to `start + (k + 1) months`, always counted from the
original start, with the day clamped to the month's end: a plan starting Jan 31 has
cycles starting Jan 31, Feb 28 (29 in a leap year), Mar 31, Apr 30, ... The time of day
is kept. A period "YYYY-MM" names, for every plan, the one cycle that starts in that
calendar month.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from dateutil.relativedelta import relativedelta

from libs.common.errors import FailedPrecondition, invalid
from services.billing.domain.model import Cycle, Plan

_PERIOD = re.compile(r"^(?!0000)(\d{4})-(0[1-9]|1[0-2])$")  # years 0001 to 9999


def cycle_start(start: datetime, k: int) -> datetime:
    """The start of cycle k (k >= 0): k months after `start`, day clamped."""
    moved: datetime = start + relativedelta(months=k)
    return moved


def cycle(start: datetime, k: int) -> Cycle:
    return Cycle(cycle_start(start, k), cycle_start(start, k + 1))


def cycle_index_at(start: datetime, at: datetime) -> int:
    """The k of the cycle containing `at` (`at` >= `start`)."""
    if at < start:
        raise plan_not_started(start)
    k = (at.year - start.year) * 12 + (at.month - start.month)
    while k > 0 and cycle_start(start, k) > at:
        k -= 1
    while cycle_start(start, k + 1) <= at:
        k += 1
    return k


def cycle_at(start: datetime, at: datetime) -> Cycle:
    """The cycle of a plan starting at `start` that contains `at`."""
    return cycle(start, cycle_index_at(start, at))


def parse_period(value: str) -> tuple[int, int]:
    """A period "YYYY-MM" as (year, month)."""
    match = _PERIOD.match(value)
    if not match:
        raise invalid(
            "period", f"must be YYYY-MM (year 0001 to 9999), got {value[:32]!r}", "INVALID_PERIOD"
        )
    return int(match.group(1)), int(match.group(2))


def period_of(instant: datetime) -> str:
    """The period ("YYYY-MM", UTC) a cycle starting at `instant` belongs to."""
    return instant.astimezone(UTC).strftime("%Y-%m")


def cycle_in_period(start: datetime, period: str) -> Cycle | None:
    """The plan's cycle that starts in the period's month, or None if the plan started
    after that month."""
    year, month = parse_period(period)
    k = (year - start.year) * 12 + (month - start.month)
    if k < 0:
        return None
    return cycle(start, k)


def next_period(period: str) -> str:
    """The period after `period`: for every plan, its cycle that follows the one starting
    in `period` starts in it."""
    year, month = parse_period(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def period_month(period: str) -> tuple[datetime, datetime]:
    """The calendar month (UTC) a period names: [its first instant, the next month's)."""
    year, month = parse_period(period)
    first = datetime(year, month, 1, tzinfo=UTC)
    return first, first + relativedelta(months=1)


def period_end(plans: Iterable[Plan], period: str) -> datetime:
    """When a period is over for a company whose offices pay on `plans`: at the end of
    its calendar month (UTC) and of every plan's cycle that starts in it, whichever is
    last. Until then a purchase may still fall in the period and a removal of the period
    may still be due later."""
    year, month = parse_period(period)
    ends = [datetime(year, month, 1, tzinfo=UTC) + relativedelta(months=1)]
    for plan in plans:
        found = cycle_in_period(plan.start_at, period)
        if found is not None:
            ends.append(found.end)
    return max(ends)


def plan_not_started(start: datetime) -> FailedPrecondition:
    return FailedPrecondition(
        "PLAN_NOT_STARTED",
        f"the plan starts at {start.isoformat()}; nothing can be bought before",
        {"start_time": start.isoformat()},
    )
