"""GetPeriodOverage on the in-memory unit of work: per office and period that starts in
a range, the overage charged to it (docs/product.md, "Credits")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.credits.use_cases.usage import OverageQuery, period_overage
from tests.unit.credits.conftest import NOW, Books

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


async def test_the_overage_of_the_periods_that_start_in_a_range(books: Books) -> None:
    await books.office("a", allowance=10, anchor=JAN_1)
    await books.office("b", allowance=1000, anchor=JAN_1)
    await books.use("a", 25, at=NOW - timedelta(days=2))  # 15 over
    await books.use("a", 5, at=NOW - timedelta(days=1))  # 5 over
    await books.use("b", 20, at=NOW)  # within the allowance: no overage
    (owed,) = await period_overage(OverageQuery(books.company_id, JAN_1, FEB_1), books.uow)
    assert (owed.office_id, owed.period.start, owed.overage, owed.count) == (
        books.offices["a"],
        JAN_1,
        20,
        2,
    )
    later = OverageQuery(books.company_id, FEB_1, NOW + timedelta(days=60))
    assert await period_overage(later, books.uow) == []
