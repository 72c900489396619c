"""Billing cycles and period ends as the tests count them, by the definition (cycle k runs
from anchor + k months to anchor + k + 1 months), apart from billing's own arithmetic."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from dateutil.relativedelta import relativedelta


def cycle_at(anchor: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The cycle of a plan anchored at `anchor` that contains `at`."""
    k = 0
    while anchor + relativedelta(months=k + 1) <= at:
        k += 1
    return anchor + relativedelta(months=k), anchor + relativedelta(months=k + 1)


def cycle_in(anchor: datetime, period: str) -> tuple[datetime, datetime] | None:
    """The cycle that starts in the period's month (None: the plan starts later)."""
    year, month = (int(x) for x in period.split("-"))
    k = (year - anchor.year) * 12 + month - anchor.month
    if k < 0:
        return None
    return anchor + relativedelta(months=k), anchor + relativedelta(months=k + 1)


def period_end(period: str, anchors: Iterable[datetime]) -> datetime:
    """When a period is over for offices on these anchors: its month and their cycles."""
    year, month = (int(x) for x in period.split("-"))
    ends = [datetime(year, month, 1, tzinfo=UTC) + relativedelta(months=1)]
    ends += [found[1] for a in anchors if (found := cycle_in(a, period))]
    return max(ends)
