"""Accounts, pooling, grants, balances and CheckLedger on the in-memory unit of work
(docs/product.md, "Credits")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from libs.common import call_context
from libs.common.errors import DomainError
from libs.common.handlers import once
from licensing.credits.v1 import credits_pb2 as pb
from services.credits.api import convert
from services.credits.domain.model import AccountKind, GrantTarget, OveragePolicy, balance_of
from services.credits.use_cases.grants import grant_credits
from services.credits.use_cases.pooling import set_pooling
from tests.unit.credits.conftest import Books, books_on

POOL = GrantTarget.COMPANY_POOL
OWN = GrantTarget.OFFICE_BALANCE
AI = GrantTarget.AI_AGENT_CREDITS


async def _refused(call: object) -> str:
    with pytest.raises(DomainError) as caught:
        await call  # type: ignore[misc]
    return caught.value.reason


# --- accounts ------------------------------------------------------------------------------


async def test_an_office_of_another_company_is_not_found(books: Books) -> None:
    await books.office("a")
    intruder = books_on(books.clock, books.uow)
    intruder.offices["a"] = books.offices["a"]
    assert await _refused(intruder.office("a")) == "OFFICE_NOT_FOUND"
    assert books.uow.state.offices[books.offices["a"]].company_id == books.company_id


async def test_the_currency_is_fixed_once_anything_was_charged_or_granted(books: Books) -> None:
    await books.office("a")
    moved = await books.office("a", currency="EUR")  # nothing on its ledger yet
    assert moved.currency == "EUR"
    await books.grant(OWN, 5, "a")
    assert await _refused(books.office("a", currency="USD")) == "OFFICE_CURRENCY_LOCKED"
    await books.office("b")
    await books.use("b", 1)
    assert await _refused(books.office("b", currency="EUR")) == "OFFICE_CURRENCY_LOCKED"


async def test_a_currency_change_waits_for_the_writers_of_both_currencies(books: Books) -> None:
    await books.office("a", currency="USD")
    books.uow.state.locks.clear()
    await books.office("a", currency="EUR")
    assert books.uow.state.locks == [(books.company_id, "EUR"), (books.company_id, "USD")]


async def test_one_primary_office_per_company(books: Books) -> None:
    await books.office("hq", primary=True)
    await books.office("new", primary=True)
    primaries = [o for o in books.uow.state.offices.values() if o.primary]
    assert [o.office_id for o in primaries] == [books.offices["new"]]


# --- grants --------------------------------------------------------------------------------


async def test_grants_go_to_their_target_and_answer_its_balance(books: Books) -> None:
    await books.office("hq", primary=True)
    await books.office("a")
    assert (await books.grant(POOL, 100, currency="USD")).balance == 100
    assert (await books.grant(POOL, 50, currency="USD")).balance == 150
    granted = await books.grant(OWN, 30, "a")
    assert (granted.balance, granted.grant.office_id) == (30, books.offices["a"])
    ai = await books.grant(AI, 20)  # no office named: the primary office
    assert (ai.balance, ai.grant.office_id) == (20, books.offices["hq"])
    a, hq = await books.office_balance("a"), await books.office_balance("hq")
    assert (a.balance, a.ai_agent_credits, hq.ai_agent_credits) == (30, 0, 20)
    assert await books.pool_balance() == 150
    assert (await books.check()).consistent


async def test_grants_refused_by_the_rules_change_nothing(books: Books) -> None:
    await books.office("a")
    await books.office("paris", currency="EUR")
    assert await _refused(books.grant(AI, 5)) == "NO_PRIMARY_OFFICE"
    await books.office("hq", primary=True)
    assert await _refused(books.grant(AI, 5, "a")) == "NOT_PRIMARY_OFFICE"
    assert await _refused(books.grant(AI, 5, currency="EUR")) == "CURRENCY_MISMATCH"
    assert await _refused(books.grant(OWN, 5, "paris", currency="USD")) == "CURRENCY_MISMATCH"
    books.offices["ghost"] = uuid.uuid4()
    assert await _refused(books.grant(OWN, 5, "ghost")) == "OFFICE_NOT_FOUND"
    assert await _refused(books.grant(AI, 5, "ghost")) == "OFFICE_NOT_FOUND"
    await books.pooling()
    assert await _refused(books.grant(OWN, 5, "a")) == "CREDIT_POOLING_ENABLED"
    assert (await books.grant(OWN, 5, "paris")).balance == 5  # EUR is not pooled
    assert [g.currency for g in books.uow.state.grants.values()] == ["EUR"]


# --- pooling -------------------------------------------------------------------------------


async def test_pooling_on_moves_every_office_balance_and_off_leaves_the_pool(
    books: Books,
) -> None:
    await books.office("a")
    await books.office("b")
    await books.office("empty")
    await books.office("paris", currency="EUR")
    await books.grant(OWN, 30, "a")
    await books.grant(OWN, 20, "b")
    await books.grant(OWN, 9, "paris")
    await books.grant(POOL, 5, currency="USD")
    on = await books.pooling()
    assert sorted((t.office_id, t.amount) for t in on.transfers) == sorted(
        [(books.offices["a"], 30), (books.offices["b"], 20)]
    )
    assert {(t.from_kind, t.to_kind) for t in on.transfers} == {
        (AccountKind.OFFICE_BALANCE, AccountKind.COMPANY_POOL)
    }
    assert (on.pool_balance, on.pooling.enabled) == (55, True)
    again = await books.pooling()
    assert (again.transfers, again.pool_balance) == ((), 55)
    off = await books.pooling(False)
    assert (off.pooling.enabled, off.transfers, off.pool_balance) == (False, (), 55)
    assert (await books.office_balance("a")).balance == 0
    assert (await books.office_balance("paris")).balance == 9
    assert (await books.use("a", 10)).split.overage == 10  # off: the pool is not drawn
    assert await books.pool_balance() == 55
    assert (await books.check()).consistent


# --- replays through the mutating-call ceremony --------------------------------------------


@pytest.fixture
def granting() -> Iterator[None]:
    call = call_context.begin(f"/{convert.SERVICE_NAME}/GrantCredits", None)
    yield
    call_context.end(call)


async def test_a_replayed_grant_is_one_grant(books: Books, granting: None) -> None:
    await books.office("a")
    request = pb.GrantCreditsRequest(
        request_id="g1",
        company_id=str(books.company_id),
        target=pb.GRANT_TARGET_OFFICE_BALANCE,
        office_id=str(books.offices["a"]),
        amount_minor=70,
    )
    command = convert.grant(request)

    async def grant() -> bytes:
        return await once(
            books.uow,
            request,
            books.company_id,
            lambda tx: grant_credits(command, tx),
            convert.granted_response,
        )

    first = await grant()
    assert await grant() == first
    assert (await books.office_balance("a")).balance == 70
    other = pb.GrantCreditsRequest()
    other.CopyFrom(request)
    other.amount_minor = 71
    with pytest.raises(DomainError) as caught:
        await once(
            books.uow,
            other,
            books.company_id,
            lambda tx: grant_credits(convert.grant(other), tx),
            convert.granted_response,
        )
    assert caught.value.reason == "REQUEST_ID_REUSED"
    assert len(books.uow.state.grants) == 1


async def test_a_replayed_pooling_switch_moves_balances_once(books: Books, granting: None) -> None:
    await books.office("a")
    await books.grant(OWN, 40, "a")
    request = pb.SetCreditPoolingRequest(
        request_id="p1", company_id=str(books.company_id), currency="USD", enabled=True
    )
    command = convert.set_pooling(request)
    answers = [
        await once(
            books.uow,
            request,
            books.company_id,
            lambda tx: set_pooling(command, tx),
            convert.pooling_response,
        )
        for _ in range(3)
    ]
    assert answers == [answers[0]] * 3
    response = pb.SetCreditPoolingResponse.FromString(answers[0])
    assert [t.amount_minor for t in response.transfers] == [40]
    transfers = [
        e for e in books.uow.state.entries if e.posting.debit == balance_of(books.offices["a"])
    ]
    assert len(transfers) == 1


# --- balances and the ledger check ---------------------------------------------------------


async def test_balances_show_a_full_allowance_before_the_period_opens(books: Books) -> None:
    await books.office("a", allowance=80)
    await books.office("b", allowance=80)
    await books.use("b", 30)
    a, b = await books.office_balance("a"), await books.office_balance("b")
    assert (a.allowance_remaining, a.consumed) == (80, 0)
    assert (b.allowance_remaining, b.consumed, b.overage) == (50, 30, 0)
    await books.use("b", 60)
    assert (await books.office_balance("b")).overage == 10


async def test_check_ledger_finds_a_balance_that_is_not_the_sum_of_its_entries(
    books: Books,
) -> None:
    await books.office("a", allowance=10)
    await books.grant(OWN, 30, "a")
    await books.use("a", 25)
    good = await books.check()
    assert good.consistent
    assert good.entries == 4
    stored = books.uow.state.accounts[(books.company_id, "USD", balance_of(books.offices["a"]))]
    stored.balance += 1  # what no use case can do
    bad = await books.check()
    assert {v.rule for v in bad.violations} == {
        "BALANCE_NOT_SUM_OF_ENTRIES",
        "CURRENCY_NOT_BALANCED",
    }
    assert not bad.consistent


async def test_a_partial_put_keeps_the_fields_it_does_not_name(books: Books) -> None:
    """Billing puts the plan's facts; the operator's overage policy stays."""
    stored = await books.office("a", allowance=100, reject=True)
    changed = replace(stored, allowance=900, primary=True, overage_policy=OveragePolicy.ALLOW)
    async with books.uow.transaction() as tx:
        saved = await books.put_account(changed, tx, frozenset({"allowance", "primary"}))
    assert (saved.allowance, saved.primary, saved.overage_policy) == (
        900,
        True,
        OveragePolicy.REJECT,
    )
    fresh = replace(stored, office_id=uuid.uuid4(), allowance=5)
    async with books.uow.transaction() as tx:
        created = await books.put_account(fresh, tx, frozenset({"primary"}))
    assert created.allowance == 5  # a new account takes the request as given
