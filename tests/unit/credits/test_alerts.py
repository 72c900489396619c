"""Thresholds on the shared balance as plain rules: levels, crossings, alert periods."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.credits.domain.alerts import ThresholdWatch, alert_period, level
from services.credits.domain.model import (
    Period,
    Split,
    Threshold,
    ThresholdKind,
    UsageKind,
    UsageRecord,
)

BALANCE, PERCENT = ThresholdKind.BALANCE, ThresholdKind.PERCENT
NOW = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
MARCH = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def record() -> UsageRecord:
    return UsageRecord(
        uuid.uuid4(), "r", uuid.uuid4(), uuid.uuid4(), UsageKind.CALLING, "USD", 1, NOW, MARCH,
        Split(company_pool=1), NOW,
    )  # fmt: skip


def test_the_alert_period_is_the_calendar_month_in_utc() -> None:
    assert alert_period(NOW) == MARCH
    assert alert_period(datetime(2026, 4, 1, tzinfo=UTC)).start == MARCH.end


def test_a_percent_level_is_taken_of_the_top_up_level_rounded_down() -> None:
    assert level(Threshold(BALANCE, 70), 1000) == 70
    assert level(Threshold(PERCENT, 20), 1000) == 200
    assert level(Threshold(PERCENT, 33), 100) == 33
    assert level(Threshold(PERCENT, 33), 10) == 3


def test_a_threshold_is_crossed_from_above_to_at_or_below_once_per_watch() -> None:
    watch = ThresholdWatch([Threshold(BALANCE, 500), Threshold(PERCENT, 10)], 2000, MARCH)
    watch.observe(900, 501, record())  # above both
    assert watch.alerts == []
    crossing = record()
    watch.observe(501, 500, crossing)  # at the level: crossed
    watch.observe(500, 250, record())  # below already: not again
    [alert] = watch.alerts
    assert (alert.threshold, alert.level, alert.balance) == (Threshold(BALANCE, 500), 500, 500)
    assert (alert.usage_id, alert.period) == (crossing.usage_id, MARCH)
    watch.observe(250, 200, record())  # 10 % of 2000
    assert [a.threshold for a in watch.alerts] == [Threshold(BALANCE, 500), Threshold(PERCENT, 10)]


def test_a_balance_that_starts_below_or_grows_crosses_nothing() -> None:
    watch = ThresholdWatch([Threshold(BALANCE, 500)], 0, MARCH)
    watch.observe(500, 450, record())  # at the level already: crossed before, not now
    watch.observe(400, 300, record())
    watch.observe(300, 800, record())
    assert watch.alerts == []
