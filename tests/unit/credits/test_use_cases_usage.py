"""RecordUsage and BatchRecordUsage on the in-memory unit of work: the draw order for
each combination, periods and their allowances, replays, and the batch writer
(docs/product.md, "Credits")."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from libs.common.errors import DomainError
from services.credits.domain.model import GrantTarget, Split, UsageKind
from services.credits.repository.usage import UsageFilter
from services.credits.use_cases.usage import usage_totals
from tests.fakes.credits import decode_record
from tests.unit.credits.conftest import NOW, Books

POOL = GrantTarget.COMPANY_POOL
OWN = GrantTarget.OFFICE_BALANCE
AI = GrantTarget.AI_AGENT_CREDITS


async def _reason_of(books: Books, office: str, amount: int, **fields: object) -> str:
    with pytest.raises(DomainError) as caught:
        await books.use(office, amount, **fields)
    return caught.value.reason


# --- the draw order ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pooling", "amount", "expected"),
    [
        # allowance 50, own balance 30, shared balance 40 (70 once pooling moved the 30)
        (False, 40, Split(allowance=40)),
        (False, 70, Split(allowance=50, office_balance=20)),
        (False, 100, Split(allowance=50, office_balance=30, overage=20)),
        (True, 70, Split(allowance=50, company_pool=20)),
        (True, 130, Split(allowance=50, company_pool=70, overage=10)),
    ],
)
async def test_allowance_then_the_shared_or_own_balance_then_overage(
    books: Books, pooling: bool, amount: int, expected: Split
) -> None:
    await books.office("a", allowance=50)
    await books.grant(OWN, 30, "a")
    await books.grant(POOL, 40, currency="USD")
    if pooling:
        await books.pooling()
    record = await books.use("a", amount)
    assert record.split == expected
    assert (await books.check()).consistent


async def test_with_pooling_off_the_shared_balance_is_not_drawn(books: Books) -> None:
    await books.office("a")
    await books.grant(POOL, 100, currency="USD")
    record = await books.use("a", 10)
    assert record.split == Split(overage=10)
    assert await books.pool_balance() == 100


async def test_with_pooling_on_the_own_balance_is_not_drawn(books: Books) -> None:
    await books.office("a")
    await books.pooling()
    await books.grant(POOL, 5, currency="USD")
    record = await books.use("a", 10)
    assert record.split == Split(company_pool=5, overage=5)


async def test_reject_refuses_what_credits_do_not_cover_and_posts_nothing(books: Books) -> None:
    await books.office("a", allowance=50, reject=True)
    await books.grant(OWN, 30, "a")
    check = await books.check()
    assert await _reason_of(books, "a", 81) == "INSUFFICIENT_CREDITS"
    after = await books.check()
    assert after.entries == check.entries
    assert (await books.office_balance("a")).allowance_remaining == 50
    assert (await books.use("a", 80)).split == Split(allowance=50, office_balance=30)


async def test_ai_agent_usage_draws_only_the_primary_offices_ai_credits(books: Books) -> None:
    await books.office("hq", allowance=100, primary=True)
    await books.office("branch", allowance=100)
    await books.grant(AI, 60)
    await books.grant(POOL, 1000, currency="USD")
    await books.pooling()
    own = await books.use("hq", 40, kind=UsageKind.AI_AGENT)
    other = await books.use("branch", 40, kind=UsageKind.AI_AGENT)
    assert own.split == Split(ai_agent_credits=40)
    assert other.split == Split(ai_agent_credits=20, overage=20)
    hq = await books.office_balance("hq")
    assert (hq.ai_agent_credits, hq.allowance_remaining) == (0, 100)
    assert await books.pool_balance() == 1000


async def test_ai_agent_usage_of_another_currency_or_without_primary_is_overage(
    books: Books,
) -> None:
    await books.office("paris", currency="EUR")
    await books.office("lyon", currency="EUR", reject=True)
    assert (await books.use("paris", 7, kind=UsageKind.AI_AGENT)).split == Split(overage=7)
    await books.office("hq", primary=True)
    await books.grant(AI, 100)
    assert (await books.use("paris", 7, kind=UsageKind.AI_AGENT)).split == Split(overage=7)
    assert await _reason_of(books, "lyon", 1, kind=UsageKind.AI_AGENT) == "INSUFFICIENT_CREDITS"


# --- periods -------------------------------------------------------------------------------


async def test_each_period_has_its_own_allowance_and_nothing_rolls_over(books: Books) -> None:
    anchor = datetime(2025, 11, 30, 9, tzinfo=UTC)
    await books.office("a", allowance=100, anchor=anchor)
    january = await books.use("a", 30)  # 2025-12-30 09:00 .. 2026-01-30 09:00
    assert january.period.start == datetime(2025, 12, 30, 9, tzinfo=UTC)
    assert january.split == Split(allowance=30)
    books.clock.set(datetime(2026, 2, 10, tzinfo=UTC))  # January 30 .. February 28
    february = await books.use("a", 130)
    assert february.period.start == datetime(2026, 1, 30, 9, tzinfo=UTC)
    assert february.period.end == datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert february.split == Split(allowance=100, overage=30)


async def test_a_usage_is_charged_to_the_period_it_occurred_in(books: Books) -> None:
    await books.office("a", allowance=100)
    await books.use("a", 100)
    december = await books.use("a", 60, at=datetime(2025, 12, 31, 23, tzinfo=UTC))
    assert december.period.start == datetime(2025, 12, 1, tzinfo=UTC)
    assert december.split == Split(allowance=60)


async def test_an_allowance_change_applies_to_periods_not_opened_yet(books: Books) -> None:
    await books.office("a", allowance=100, reject=True)
    await books.use("a", 10)  # opens January with 100
    await books.office("a", allowance=20, reject=True)
    assert (await books.use("a", 90)).split == Split(allowance=90)
    books.clock.set(datetime(2026, 2, 3, tzinfo=UTC))  # February opens with 20
    assert await _reason_of(books, "a", 21) == "INSUFFICIENT_CREDITS"
    assert (await books.use("a", 20)).split == Split(allowance=20)


async def test_a_refused_usage_leaves_its_period_unopened(books: Books) -> None:
    await books.office("a", allowance=10, reject=True)
    assert await _reason_of(books, "a", 11) == "INSUFFICIENT_CREDITS"
    await books.office("a", allowance=50, reject=True)  # the period never opened
    assert (await books.use("a", 50)).split == Split(allowance=50)


async def test_usage_dated_too_far_ahead_is_refused(books: Books) -> None:
    await books.office("a", allowance=10)
    ahead = NOW + timedelta(minutes=6)
    assert await _reason_of(books, "a", 1, at=ahead) == "OCCURRED_IN_FUTURE"
    near = await books.use("a", 1, at=NOW + timedelta(minutes=4))
    assert near.occurred_at == NOW + timedelta(minutes=4)


async def test_usage_of_an_unknown_office_or_in_another_currency(books: Books) -> None:
    await books.office("a")
    assert await _reason_of(books, "nowhere", 1) == "OFFICE_NOT_FOUND"
    assert await _reason_of(books, "a", 1, currency="EUR") == "CURRENCY_MISMATCH"


# --- replays -------------------------------------------------------------------------------


async def test_a_sequential_replay_answers_the_same_bytes_and_charges_once(books: Books) -> None:
    await books.office("a")
    await books.grant(OWN, 100, "a")
    usage = books.usage("a", 30, request_id="r1")
    first = await books.recorder.record(usage)
    again = await books.recorder.record(usage)
    assert again == first
    assert len(books.uow.state.usage) == 1
    assert (await books.office_balance("a")).balance == 70


async def test_single_then_batch_share_the_usage(books: Books) -> None:
    await books.office("a")
    usage = books.usage("a", 30, request_id="r1")
    single = await books.recorder.record(usage)
    batch = await books.recorder.record_each([usage, usage])
    assert batch == [single, single]
    assert len(books.uow.state.usage) == 1


async def test_the_same_request_id_for_another_usage_is_refused(books: Books) -> None:
    await books.office("a")
    await books.use("a", 30, request_id="r1")
    assert await _reason_of(books, "a", 31, request_id="r1") == "REQUEST_ID_REUSED"
    batch = await books.recorder.record_each(
        [books.usage("a", 5, request_id="r2"), books.usage("a", 6, request_id="r2")]
    )
    assert isinstance(batch[0], bytes)
    assert isinstance(batch[1], DomainError)
    assert batch[1].reason == "REQUEST_ID_REUSED"
    assert sorted(u.amount for u in books.uow.state.usage.values()) == [5, 30]


async def test_a_refused_usage_can_be_retried_with_its_request_id(books: Books) -> None:
    await books.office("a", reject=True)
    assert await _reason_of(books, "a", 10, request_id="r1") == "INSUFFICIENT_CREDITS"
    await books.grant(OWN, 10, "a")
    assert (await books.use("a", 10, request_id="r1")).split == Split(office_balance=10)


# --- the batch writer ----------------------------------------------------------------------


async def test_concurrent_usages_are_one_transaction_and_each_its_own_outcome(
    books: Books,
) -> None:
    await books.office("a", allowance=25, reject=True)
    await books.office("b", allowance=10)
    commits = books.uow.commits
    usages = [books.usage("a" if i % 2 else "b", 10) for i in range(8)]
    outcomes = await books.recorder.record_each(usages)
    assert books.uow.commits == commits + 1
    recorded = [decode_record(o) for o in outcomes if isinstance(o, bytes)]
    refused = [o for o in outcomes if isinstance(o, DomainError)]
    # a: 25 of allowance covers two usages of 10 (the third is refused, and the fourth);
    # b: 10 of allowance, then overage.
    assert [r.reason for r in refused] == ["INSUFFICIENT_CREDITS"] * 2
    assert sum(r.split.allowance for r in recorded) == 30
    assert sum(r.split.overage for r in recorded) == 30
    assert (await books.check()).consistent


async def test_an_office_that_changed_currency_on_another_replica_is_rerouted(
    books: Books,
) -> None:
    await books.office("a")
    await books.use("a", 1)  # this replica now routes "a" to USD
    office = books.uow.state.offices[books.offices["a"]]
    books.uow.state.offices[office.office_id] = replace(office, currency="EUR")
    assert await _reason_of(books, "a", 1) == "OFFICE_CHANGED"
    assert (await books.use("a", 1)).currency == "EUR"  # the retry finds the new route


async def test_a_currency_change_here_routes_the_next_usage_at_once(books: Books) -> None:
    await books.office("a", reject=True)
    # Refused: nothing charged (the currency may still change), but routed to USD.
    assert await _reason_of(books, "a", 1) == "INSUFFICIENT_CREDITS"
    await books.office("a", currency="EUR")
    assert (await books.use("a", 1)).currency == "EUR"


async def test_totals_add_up_per_office_and_per_currency(books: Books) -> None:
    await books.office("a", allowance=10)
    await books.office("b")
    await asyncio.gather(books.use("a", 15), books.use("b", 5), books.use("a", 1))
    totals = await usage_totals(UsageFilter(books.company_id), books.uow)
    assert [t.amount for t in totals.companies] == [21]
    assert sum(t.amount for t in totals.offices) == 21
    assert totals.companies[0].split == Split(allowance=10, overage=11)


async def test_usages_of_many_companies_share_one_transaction_each_on_its_own_books(
    books: Books,
) -> None:
    companies = [books] + [
        Books(books.clock, books.uow, books.recorder, books.put_account) for _ in range(3)
    ]
    for n, company in enumerate(companies):
        await company.office("a", allowance=10 * (n + 1))
    commits = books.uow.commits
    await asyncio.gather(*(c.use("a", 7) for c in companies for _ in range(2)))
    assert books.uow.commits == commits + 1  # one writer: all four companies in one batch
    for n, company in enumerate(companies):
        office = await company.office_balance("a")
        allowance = 10 * (n + 1)
        assert office.allowance_remaining == max(allowance - 14, 0)
        assert (await company.check()).consistent
