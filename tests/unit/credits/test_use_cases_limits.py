"""Office caps on the shared company balance, thresholds on it and their alerts, on the
in-memory unit of work (docs/product.md, "Credits")."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from libs.common.errors import DomainError
from services.credits.domain import events
from services.credits.domain.model import (
    CreditAlert,
    GrantTarget,
    OfficeCap,
    Split,
    Threshold,
    ThresholdKind,
    UsageKind,
)
from services.credits.use_cases import limits
from services.credits.use_cases.limits import (
    AlertsPage,
    CapsPage,
    ClearCap,
    SetCap,
    SetThresholds,
    Thresholds,
)
from tests.unit.credits.conftest import Books

POOL = GrantTarget.COMPANY_POOL
OWN = GrantTarget.OFFICE_BALANCE
AI = GrantTarget.AI_AGENT_CREDITS


def balance(value: int) -> Threshold:
    return Threshold(ThresholdKind.BALANCE, value)


def percent(value: int) -> Threshold:
    return Threshold(ThresholdKind.PERCENT, value)


async def set_cap(books: Books, office: str, cap: int) -> OfficeCap:
    async with books.uow.transaction() as tx:
        return await limits.set_cap(SetCap(books.company_id, books.offices[office], cap), tx)


async def clear_cap(books: Books, office: str) -> bool:
    async with books.uow.transaction() as tx:
        return await limits.clear_cap(ClearCap(books.company_id, books.offices[office]), tx)


async def caps(books: Books) -> list[OfficeCap]:
    return await limits.list_caps(CapsPage(books.company_id, None, 100), books.uow)


async def set_thresholds(books: Books, *thresholds: Threshold) -> Thresholds:
    async with books.uow.transaction() as tx:
        command = SetThresholds(books.company_id, "USD", tuple(thresholds))
        return await limits.set_thresholds(command, tx)


async def alerts(books: Books) -> list[CreditAlert]:
    return await limits.list_alerts(AlertsPage(books.company_id, None, None, 100), books.uow)


async def pooled(books: Books, shared: int, *offices: str, reject: bool = False) -> None:
    for name in offices:
        await books.office(name, allowance=10, reject=reject)
    await books.pooling()
    await books.grant(POOL, shared, currency="USD")


async def refusal(books: Books, office: str, amount: int, **fields: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await books.use(office, amount, **fields)
    return caught.value


# --- caps ----------------------------------------------------------------------------------


async def test_a_capped_office_draws_the_shared_balance_up_to_its_cap_then_overage(
    books: Books,
) -> None:
    await pooled(books, 1000, "a", "b")
    await set_cap(books, "a", 100)
    assert (await books.use("a", 70)).split == Split(allowance=10, company_pool=60)
    assert (await books.use("a", 70)).split == Split(company_pool=40, overage=30)
    assert (await books.use("a", 5)).split == Split(overage=5)
    # The other office is not capped: it may take the rest of the shared balance.
    assert (await books.use("b", 910)).split == Split(allowance=10, company_pool=900)
    [cap] = await caps(books)
    assert (cap.cap, cap.drawn) == (100, 100)
    assert (await books.check()).consistent


async def test_a_capped_office_that_rejects_overage_is_refused_past_its_cap(
    books: Books,
) -> None:
    await pooled(books, 1000, "a", reject=True)
    await set_cap(books, "a", 50)
    before = await books.check()
    error = await refusal(books, "a", 61)
    assert error.reason == "INSUFFICIENT_CREDITS"
    assert error.metadata["limited_by"] == "OFFICE_CAP"
    assert error.metadata["covered_minor"] == "60"
    assert (await books.check()).entries == before.entries
    assert (await books.use("a", 60)).split == Split(allowance=10, company_pool=50)
    assert await books.pool_balance() == 950


async def test_a_refusal_for_an_empty_shared_balance_does_not_blame_the_cap(
    books: Books,
) -> None:
    await pooled(books, 20, "a", reject=True)
    await set_cap(books, "a", 500)
    error = await refusal(books, "a", 31)
    assert error.reason == "INSUFFICIENT_CREDITS"
    assert "limited_by" not in error.metadata


async def test_the_cap_is_per_billing_period_of_the_office(books: Books) -> None:
    await pooled(books, 1000, "a")
    await set_cap(books, "a", 100)
    assert (await books.use("a", 200)).split == Split(allowance=10, company_pool=100, overage=90)
    books.clock.set(datetime(2026, 2, 3, tzinfo=UTC))
    assert (await books.use("a", 200)).split == Split(allowance=10, company_pool=100, overage=90)
    # A late usage of January still counts against January's cap.
    late = await books.use("a", 5, at=datetime(2026, 1, 31, tzinfo=UTC))
    assert late.split == Split(overage=5)


async def test_a_cap_set_mid_period_counts_what_the_office_drew_before(books: Books) -> None:
    await pooled(books, 1000, "a")
    await books.use("a", 90)  # 10 allowance, 80 shared
    cap = await set_cap(books, "a", 100)
    assert (cap.drawn, cap.period.start) == (80, datetime(2026, 1, 1, tzinfo=UTC))
    assert (await books.use("a", 50)).split == Split(company_pool=20, overage=30)


async def test_a_cleared_cap_frees_the_office_and_a_new_one_counts_from_the_records(
    books: Books,
) -> None:
    await pooled(books, 1000, "a")
    await set_cap(books, "a", 30)
    await books.use("a", 50)  # 10 + 30 shared + 10 overage
    assert await clear_cap(books, "a") is True
    assert await clear_cap(books, "a") is False
    assert await caps(books) == []
    assert (await books.use("a", 100)).split == Split(company_pool=100)
    cap = await set_cap(books, "a", 200)
    assert cap.drawn == 130
    assert (await books.use("a", 100)).split == Split(company_pool=70, overage=30)


async def test_only_the_shared_balance_is_capped(books: Books) -> None:
    await books.office("hq", allowance=100, primary=True)
    await books.grant(OWN, 500, "hq")
    await books.grant(AI, 300)
    await set_cap(books, "hq", 0)
    # Pooling off: the office's own balance is not capped.
    assert (await books.use("hq", 300)).split == Split(allowance=100, office_balance=200)
    assert (await books.use("hq", 200, kind=UsageKind.AI_AGENT)).split == Split(
        ai_agent_credits=200
    )
    await books.pooling()  # the 300 left move into the shared balance
    assert (await books.use("hq", 10)).split == Split(overage=10)
    assert await books.pool_balance() == 300


async def test_a_cap_of_an_office_of_another_company_is_not_found(books: Books) -> None:
    await books.office("a")
    stranger = SetCap(uuid.uuid4(), books.offices["a"], 10)
    async with books.uow.transaction() as tx:
        with pytest.raises(DomainError) as caught:
            await limits.set_cap(stranger, tx)
    assert caught.value.reason == "OFFICE_NOT_FOUND"
    async with books.uow.transaction() as tx:
        with pytest.raises(DomainError) as caught:
            await limits.clear_cap(ClearCap(uuid.uuid4(), books.offices["a"]), tx)
    assert caught.value.reason == "OFFICE_NOT_FOUND"
    assert await caps(books) == []


async def test_concurrent_usages_of_a_capped_office_never_pass_its_cap(books: Books) -> None:
    await pooled(books, 10_000, "a", reject=True)
    await set_cap(books, "a", 500)
    results = await asyncio.gather(*(books.use("a", 7) for _ in range(100)), return_exceptions=True)
    recorded = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    # 7 from the allowance, then 3 + 4 shared, then 7 shared each while the cap allows.
    drawn = sum(r.split.company_pool for r in recorded)
    assert (drawn, len(recorded), len(refused)) == (4 + 70 * 7, 72, 28)
    assert {getattr(r, "reason", None) for r in refused} == {"INSUFFICIENT_CREDITS"}
    [cap] = await caps(books)
    assert cap.drawn == drawn


# --- thresholds and alerts -----------------------------------------------------------------


async def test_crossing_a_balance_threshold_records_one_alert_per_period(books: Books) -> None:
    await pooled(books, 1000, "a")
    await set_thresholds(books, balance(500))
    await books.use("a", 400)  # 10 + 390: 610 left
    assert await alerts(books) == []
    crossing = await books.use("a", 200)  # 410 left
    [alert] = await alerts(books)
    assert (alert.threshold, alert.level, alert.balance) == (balance(500), 500, 410)
    assert (alert.usage_id, alert.office_id) == (crossing.usage_id, books.offices["a"])
    assert alert.period.start == datetime(2026, 1, 1, tzinfo=UTC)
    # Topped up and crossed again in the same month: still one alert.
    await books.grant(POOL, 1000, currency="USD")
    await books.use("a", 1000)
    assert len(await alerts(books)) == 1
    # Next month, a new crossing records a new alert.
    books.clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    await books.grant(POOL, 1000, currency="USD")
    await books.use("a", 1000)
    assert [a.period.start.month for a in await alerts(books)] == [1, 2]


async def test_a_percent_threshold_is_taken_of_the_top_up_level(books: Books) -> None:
    await books.office("a")
    await books.grant(OWN, 400, "a")
    await books.pooling()  # 400 moved in: the top-up level is 400
    await set_thresholds(books, percent(25))
    assert (await limits.get_thresholds(books.company_id, "USD", books.uow)).top_up == 400
    await books.use("a", 299)  # 101 left, above 100
    assert await alerts(books) == []
    await books.grant(POOL, 99, currency="USD")  # 200 now: the level is 50
    await books.use("a", 149)  # 51 left
    assert await alerts(books) == []
    await books.use("a", 1)
    [alert] = await alerts(books)
    assert (alert.threshold, alert.level, alert.balance) == (percent(25), 50, 50)


async def test_one_usage_crossing_several_thresholds_records_one_alert_each(
    books: Books,
) -> None:
    await pooled(books, 1000, "a")
    await set_thresholds(books, balance(0), balance(800), percent(50))
    used = await books.use("a", 1500)  # 1000 shared, 490 overage: the balance is 0
    found = await alerts(books)
    assert sorted(a.threshold for a in found) == [balance(0), balance(800), percent(50)]
    assert {(a.usage_id, a.balance) for a in found} == {(used.usage_id, 0)}


async def test_a_balance_already_below_a_new_threshold_does_not_cross_it(books: Books) -> None:
    await pooled(books, 100, "a")
    await set_thresholds(books, balance(500))
    await books.use("a", 50)
    assert await alerts(books) == []


async def test_usage_that_does_not_draw_the_shared_balance_crosses_nothing(
    books: Books,
) -> None:
    await pooled(books, 100, "a")
    await set_thresholds(books, balance(100))
    await books.use("a", 10)  # the allowance
    await books.pooling(enabled=False)
    await books.use("a", 10)  # overage: pooling is off
    assert await alerts(books) == []


async def test_concurrent_usages_crossing_a_threshold_record_one_alert(books: Books) -> None:
    await pooled(books, 1000, "a", "b", "c")
    await set_thresholds(books, balance(500), percent(10))
    await asyncio.gather(*(books.use(name, 9) for _ in range(40) for name in ("a", "b", "c")))
    found = await alerts(books)
    assert sorted(a.threshold for a in found) == [balance(500), percent(10)]


async def test_thresholds_are_replaced_and_one_that_stays_keeps_its_alert(books: Books) -> None:
    await pooled(books, 1000, "a")
    await set_thresholds(books, balance(900), balance(100))
    await books.use("a", 200)
    assert [a.threshold for a in await alerts(books)] == [balance(900)]
    kept = await set_thresholds(books, balance(900), percent(50))
    assert kept.thresholds == (balance(900), percent(50))
    await books.grant(POOL, 1000, currency="USD")  # 1810, the top-up level
    await books.use("a", 1000)  # 810: crosses 900 again and 905 (50 %)
    assert sorted(a.threshold for a in await alerts(books)) == [balance(900), percent(50)]
    cleared = await set_thresholds(books)
    assert cleared.thresholds == ()


async def test_a_crossing_is_published_once_with_its_alert(books: Books) -> None:
    await pooled(books, 1000, "a")
    await set_thresholds(books, balance(500))
    await books.use("a", 600)  # crosses: 410 left
    await books.use("a", 100)  # below already: no second crossing
    published = [
        e
        for e in books.uow.state.events.events[books.company_id]
        if e.event_type == events.THRESHOLD_CROSSED
    ]
    [alert] = await alerts(books)
    assert [e.data["alert_id"] for e in published] == [str(alert.alert_id)]
    assert published[0].data["level"] == "500"
    assert published[0].data["balance"] == str(alert.balance)
