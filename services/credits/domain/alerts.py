"""Thresholds on the shared company balance and their alerts (docs/product.md,
"Credits").

A threshold is a level of the shared balance (`COMPANY_POOL`) of one currency: an
absolute balance, or a percent of the top-up level, the balance right after credits
last entered the shared balance (a grant to it, or office balances moved in when
pooling was turned on); its level is floor(top-up level * percent / 100). A usage
crosses a threshold when it takes the balance from above the level to at or below it.
Each threshold records at most one alert per alert period, the calendar month (UTC) of
the instant the usage is recorded: the first crossing of the period records it, later
ones in the same period record nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from services.credits.domain.model import (
    DEFAULT_PERIOD_ANCHOR,
    CreditAlert,
    Period,
    Threshold,
    ThresholdKind,
    UsageRecord,
)
from services.credits.domain.periods import period_containing

MAX_THRESHOLDS = 10  # per currency
PERCENT_RANGE = range(1, 100)


def alert_period(now: datetime) -> Period:
    """The alert period of an instant: its calendar month, UTC."""
    return period_containing(DEFAULT_PERIOD_ANCHOR, now)


def level(threshold: Threshold, top_up: int) -> int:
    """The balance, in minor units, the threshold stands for."""
    if threshold.kind is ThresholdKind.BALANCE:
        return threshold.value
    return top_up * threshold.value // 100


class ThresholdWatch:
    """The thresholds of one (company, currency) with no alert in the current alert
    period yet, watched while a batch of usages draws from the shared balance."""

    def __init__(self, pending: Iterable[Threshold], top_up: int, period: Period) -> None:
        self._pending = sorted(set(pending))
        self._top_up = top_up
        self._period = period
        self.alerts: list[CreditAlert] = []

    def observe(self, before: int, after: int, usage: UsageRecord) -> None:
        """Records an alert for each pending threshold the usage crossed."""
        if after >= before:
            return
        for threshold in list(self._pending):
            at = level(threshold, self._top_up)
            if before > at >= after:
                self._pending.remove(threshold)
                self.alerts.append(
                    CreditAlert(
                        alert_id=uuid.uuid4(),
                        company_id=usage.company_id,
                        currency=usage.currency,
                        threshold=threshold,
                        period=self._period,
                        level=at,
                        balance=after,
                        usage_id=usage.usage_id,
                        office_id=usage.office_id,
                        created_at=usage.recorded_at,
                    )
                )
