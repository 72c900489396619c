"""Billing periods (docs/product.md, "Companies, offices and plans" and "Credits"):
monthly, anchored at the plan's start.

Period n starts at the anchor plus n months, with the anchor's day clamped to the
month's end (an anchor on the 31st gives Feb 28/29, Apr 30, then Mar 31 again: the day
never drifts) and the anchor's time of day. Periods extend before the anchor too, so
every instant belongs to exactly one period. Allowances are per period and never roll
over; a usage is charged to the period containing the instant it occurred.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from services.credits.domain.model import Period


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months, its day clamped to the target month's end."""
    years, month_index = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years, month_index + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_containing(anchor: datetime, instant: datetime) -> Period:
    """The billing period that `instant` falls in."""
    n = (instant.year - anchor.year) * 12 + (instant.month - anchor.month)
    while add_months(anchor, n) > instant:
        n -= 1
    while add_months(anchor, n + 1) <= instant:
        n += 1
    return Period(add_months(anchor, n), add_months(anchor, n + 1))
