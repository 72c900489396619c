"""Billing periods: monthly from the anchor, the day clamped to the month's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.credits.domain.periods import add_months, period_containing


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_anchor_on_the_31st_clamps_without_drifting() -> None:
    anchor = utc(2026, 1, 31, 9)
    assert [add_months(anchor, n) for n in range(4)] == [
        utc(2026, 1, 31, 9),
        utc(2026, 2, 28, 9),
        utc(2026, 3, 31, 9),
        utc(2026, 4, 30, 9),
    ]
    assert add_months(utc(2028, 1, 31), 1) == utc(2028, 2, 29)
    assert add_months(anchor, -2) == utc(2025, 11, 30, 9)


def test_period_boundaries_are_half_open() -> None:
    anchor = utc(2026, 1, 15)
    period = period_containing(anchor, utc(2026, 2, 15))
    assert (period.start, period.end) == (utc(2026, 2, 15), utc(2026, 3, 15))
    before = period_containing(anchor, utc(2026, 2, 15) - timedelta(microseconds=1))
    assert (before.start, before.end) == (utc(2026, 1, 15), utc(2026, 2, 15))


def test_periods_extend_before_the_anchor() -> None:
    period = period_containing(utc(2026, 3, 10), utc(2026, 1, 1))
    assert (period.start, period.end) == (utc(2025, 12, 10), utc(2026, 1, 10))


@given(
    anchor=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    instant=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_every_instant_is_in_exactly_one_period(anchor: datetime, instant: datetime) -> None:
    period = period_containing(anchor, instant)
    assert instant in period
    assert period.start < period.end <= period.start + timedelta(days=31)
    following = period_containing(anchor, period.end)
    assert following.start == period.end
