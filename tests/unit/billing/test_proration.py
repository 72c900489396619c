"""Proration and cycles, against values worked out by hand (not by the code under test)."""

import uuid
from datetime import UTC, datetime

import pytest

from services.billing.domain import checkout, cycles, invoicing, parity
from services.billing.domain.model import (
    Cycle,
    OfficeCounts,
    Plan,
    PlanKind,
    PoolCounts,
    Snapshot,
    Split,
)
from services.billing.domain.proration import format_money, prorate


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


JAN_2026 = Cycle(at(2026, 1, 1), at(2026, 2, 1))  # 31 days = 2,678,400 s
FEB_2026 = Cycle(at(2026, 2, 1), at(2026, 3, 1))  # 28 days = 2,419,200 s
FEB_2028 = Cycle(at(2028, 2, 1), at(2028, 3, 1))  # 29 days = 2,505,600 s
APR_2026 = Cycle(at(2026, 4, 1), at(2026, 5, 1))  # 30 days = 2,592,000 s


@pytest.mark.parametrize(
    ("cycle", "seconds"),
    [(JAN_2026, 2_678_400), (FEB_2026, 2_419_200), (FEB_2028, 2_505_600), (APR_2026, 2_592_000)],
)
def test_cycle_lengths(cycle: Cycle, seconds: int) -> None:
    assert cycle.seconds == seconds


@pytest.mark.parametrize(
    ("instant", "price", "units", "expected"),
    [
        (at(2026, 1, 1), 1000, 1, 1000),  # first second: the whole cycle
        (datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC), 1000, 1, 1000),
        (at(2026, 1, 16, 12), 1000, 1, 500),  # 1,339,200 s of 2,678,400: exactly half
        (at(2026, 1, 15, 12), 1000, 3, 1597),  # 3000 x 16.5/31 = 1596.77
        (at(2026, 1, 31, 23, 59, 59), 1000, 1, 0),  # last second: 1000/2,678,400
        (at(2026, 1, 31, 23, 59, 59), 4_017_600, 1, 2),  # 1.5 -> 2 (even)
        (at(2026, 1, 31, 23, 59, 59), 1_339_200, 1, 0),  # 0.5 -> 0 (even)
        (at(2026, 1, 31, 23, 59, 59), 8_035_200, 1, 3),  # exactly 3
    ],
)
def test_usd_in_a_31_day_cycle(instant: datetime, price: int, units: int, expected: int) -> None:
    assert prorate(price, units, JAN_2026, instant) == expected


def test_28_day_february_half_even() -> None:
    # Feb 15 00:00: 14 of 28 days left, exactly half.
    assert prorate(999, 1, FEB_2026, at(2026, 2, 15)) == 500  # 499.5 -> 500 (even)
    assert prorate(997, 1, FEB_2026, at(2026, 2, 15)) == 498  # 498.5 -> 498 (even)
    assert prorate(5, 1, FEB_2026, at(2026, 2, 15)) == 2  # EUR 0.025 -> 0.02
    assert prorate(7, 1, FEB_2026, at(2026, 2, 15)) == 4  # EUR 0.035 -> 0.04


def test_29_day_leap_february() -> None:
    assert prorate(2900, 1, FEB_2028, at(2028, 2, 2)) == 2800  # 28 of 29 days
    assert prorate(2900, 1, FEB_2028, at(2028, 2, 29, 23, 59, 59)) == 0  # 2900/2,505,600


def test_30_day_april_in_yen() -> None:
    assert prorate(3000, 1, APR_2026, at(2026, 4, 21)) == 1000  # 10 of 30 days
    assert prorate(1000, 1, APR_2026, at(2026, 4, 21)) == 333  # 333.33
    assert prorate(1000, 1, APR_2026, at(2026, 4, 11)) == 667  # 666.67
    assert prorate(1000, 2, APR_2026, at(2026, 4, 1)) == 2000  # whole cycle, two units


def test_nothing_new_costs_nothing() -> None:
    assert prorate(1000, 0, JAN_2026, at(2026, 1, 10)) == 0


def test_instants_outside_the_cycle_are_refused() -> None:
    with pytest.raises(ValueError, match="not in the cycle"):
        prorate(1000, 1, JAN_2026, at(2026, 2, 1))


def test_end_of_month_anchor_clamps_and_comes_back() -> None:
    start = at(2026, 1, 31, 10)
    starts = [cycles.cycle_start(start, k) for k in range(4)]
    assert starts == [
        at(2026, 1, 31, 10),
        at(2026, 2, 28, 10),
        at(2026, 3, 31, 10),
        at(2026, 4, 30, 10),
    ]
    leap = at(2028, 1, 31)
    assert cycles.cycle_start(leap, 1) == at(2028, 2, 29)
    assert cycles.cycle_start(leap, 2) == at(2028, 3, 31)
    assert cycles.cycle_at(start, at(2026, 3, 1)) == Cycle(at(2026, 2, 28, 10), at(2026, 3, 31, 10))
    assert cycles.cycle_at(start, at(2026, 2, 28, 9, 59, 59)) == Cycle(
        at(2026, 1, 31, 10), at(2026, 2, 28, 10)
    )
    assert cycles.cycle_at(start, at(2026, 2, 28, 10)).start == at(2026, 2, 28, 10)
    # 28 days of Feb 2026 from the Jan 31 anchor; one second before its end: 1 s left.
    feb = cycles.cycle_at(start, at(2026, 2, 1))
    assert feb.seconds == 28 * 86_400
    assert prorate(28 * 86_400, 1, feb, at(2026, 2, 28, 9, 59, 59)) == 1


def test_periods_name_the_cycle_starting_in_the_month() -> None:
    start = at(2026, 1, 31, 10)
    assert cycles.cycle_in_period(start, "2026-02") == Cycle(
        at(2026, 2, 28, 10), at(2026, 3, 31, 10)
    )
    assert cycles.cycle_in_period(start, "2025-12") is None
    assert cycles.period_of(at(2026, 2, 28, 10)) == "2026-02"
    for bad in ("2026-13", "2026-1", "26-01", "", "2026-01-01", "0000-01"):
        with pytest.raises(Exception, match="YYYY-MM"):
            cycles.parse_period(bad)


def test_money_is_formatted_with_cldr_minor_units() -> None:
    assert format_money(1065, "USD") == "USD 10.65"
    assert format_money(3194, "JPY") == "JPY 3194"
    assert format_money(5, "EUR") == "EUR 0.05"


def test_checkout_split_and_message() -> None:
    assert checkout.split(6, 2, 10) == Split(2, 4, 0)
    assert checkout.split(6, 10, 10) == Split(6, 0, 0)
    assert checkout.split(6, 1, 2) == Split(1, 2, 3)
    assert checkout.message(Split(0, 3, 2)) == "3 from pool, 2 new"
    assert checkout.pool_takes_part(True, PlanKind.BUNDLE, "connect")
    assert not checkout.pool_takes_part(True, PlanKind.LEGACY, "connect")
    assert not checkout.pool_takes_part(True, PlanKind.BUNDLE, "agentic_ai")
    assert not checkout.pool_takes_part(False, PlanKind.BUNDLE, "connect")


def plan(office: uuid.UUID, start: datetime, prices: dict[str, int], active: bool = True) -> Plan:
    return Plan(
        uuid.uuid4(), uuid.UUID(int=1), office, PlanKind.BUNDLE, "USD", prices, False, start,
        active, False, start, start,
    )  # fmt: skip


def test_pooled_units_go_to_the_oldest_active_plan() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    old_inactive = plan(c, at(2025, 1, 1), {"connect": 1}, active=False)
    oldest = plan(b, at(2025, 6, 1), {"connect": 1000})
    newer = plan(a, at(2026, 1, 1), {"connect": 1000})
    snapshot = Snapshot(
        at(2026, 1, 20),
        (OfficeCounts(a, "USD", "connect", assigned=2, spare=1, held=1, removal_scheduled=1),),
        (PoolCounts("USD", "connect", pooled=3, held=2),),
        10,
    )
    lines = invoicing.lines(snapshot, [newer, oldest, old_inactive])
    assert [(line.plan_id, line.units, line.amount) for line in lines] == [
        (newer.plan_id, 5, 5000),
        (oldest.plan_id, 5, 5000),
    ]
    assert invoicing.reconcile(snapshot, lines).balanced
    assert not invoicing.reconcile(Snapshot(at(2026, 1, 20), (), (), 1), []).balanced
    assert parity.mismatches([oldest, newer]) == []
    cheaper = plan(c, at(2026, 1, 2), {"connect": 900})
    (found,) = parity.mismatches([oldest, newer, cheaper])
    assert {price for _, _, price in found.prices} == {1000, 900}
