"""Period rollover: allowances reset each period, nothing carries over, and late usage is
charged to the period it occurred in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from tests.support.credits import CreditsCompany, ts

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)


async def test_allowance_resets_without_carry_over(
    company: CreditsCompany, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 1, 20, tzinfo=UTC))
    await company.office("a", allowance=100, anchor=JAN)
    jan = await company.use("a", 70)
    assert (jan.split.allowance_minor, jan.period_start_time.ToDatetime(UTC)) == (70, JAN)
    assert (await company.office_balance("a")).allowance_remaining_minor == 30

    clock.set(datetime(2026, 2, 3, tzinfo=UTC))
    office = await company.office_balance("a")
    assert (office.allowance_remaining_minor, office.period_start_time.ToDatetime(UTC)) == (
        100,
        FEB,
    )
    feb = await company.use("a", 130)
    # 100 this period; January's 30 left over did not carry over.
    assert (feb.split.allowance_minor, feb.split.overage_minor) == (100, 30)
    assert feb.period_end_time.ToDatetime(UTC) == MAR


async def test_usage_dated_in_the_previous_period_is_charged_to_it(
    company: CreditsCompany, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 1, 10, tzinfo=UTC))
    await company.office("a", allowance=100, anchor=JAN)
    await company.use("a", 60)
    clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    await company.use("a", 10)
    late = await company.use("a", 50, at=datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    assert late.period_start_time.ToDatetime(UTC) == JAN
    # January had 40 left: 40 from it, the rest is overage (February's allowance is not
    # touched).
    assert (late.split.allowance_minor, late.split.overage_minor) == (40, 10)
    assert (await company.office_balance("a")).allowance_remaining_minor == 90
    # A period that never had usage opens with its own allowance.
    december = await company.use("a", 30, at=datetime(2025, 12, 5, tzinfo=UTC))
    assert december.split.allowance_minor == 30
    in_january = await company.usage(start_time=ts(JAN), end_time=ts(FEB))
    assert sorted(u.amount_minor for u in in_january) == [50, 60]
    assert (await company.check()).consistent


async def test_periods_follow_the_anchor_day_clamped_to_month_end(
    company: CreditsCompany, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 3, 5, tzinfo=UTC))
    await company.office("a", allowance=10, anchor=datetime(2025, 10, 31, tzinfo=UTC))
    used = await company.use("a", 5, at=datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert used.period_start_time.ToDatetime(UTC) == datetime(2026, 2, 28, tzinfo=UTC)
    assert used.period_end_time.ToDatetime(UTC) == datetime(2026, 3, 31, tzinfo=UTC)
    earlier = await company.use("a", 5, at=datetime(2026, 2, 27, tzinfo=UTC))
    assert earlier.period_start_time.ToDatetime(UTC) == datetime(2026, 1, 31, tzinfo=UTC)


async def test_default_anchor_is_calendar_months(
    company: CreditsCompany, stub: object, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 4, 17, 8, tzinfo=UTC))
    await company.office("a", allowance=10)
    used = await company.use("a", 1, kind=pb.USAGE_KIND_MESSAGING)
    assert used.period_start_time.ToDatetime(UTC) == datetime(2026, 4, 1, tzinfo=UTC)
    assert used.period_end_time.ToDatetime(UTC) == datetime(2026, 5, 1, tzinfo=UTC)
