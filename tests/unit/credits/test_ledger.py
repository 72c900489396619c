"""The double-entry ledger rules, in memory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.credits.domain import ledger
from services.credits.domain.drawing import Usage
from services.credits.domain.errors import InsufficientCredits
from services.credits.domain.ledger import Ledger, LedgerRuleBroken
from services.credits.domain.model import (
    AccountKind,
    EntryKind,
    LedgerAccount,
    OveragePolicy,
    Split,
    UsageKind,
    allowance_of,
    balance_of,
    company_pool,
    consumed_by,
    issued,
    overage_of,
)

OFFICE = uuid.uuid4()
PERIOD = datetime(2026, 1, 1, tzinfo=UTC)


def book(**balances: int) -> Ledger:
    keys = {
        "issued": issued(),
        "pool": company_pool(),
        "own": balance_of(OFFICE),
        "allowance": allowance_of(OFFICE, PERIOD),
        "consumed": consumed_by(OFFICE),
        "overage": overage_of(OFFICE),
    }
    return Ledger({key: balances.get(name, 0) for name, key in keys.items()})


def test_postings_move_balances_and_keep_the_sum_at_zero() -> None:
    b = book()
    ledger.grant(b, company_pool(), 500, uuid.uuid4())
    ledger.open_period(b, OFFICE, PERIOD, 100)
    assert b.balance(issued()) == -600
    assert b.deltas() == {issued(): -600, company_pool(): 500, allowance_of(OFFICE, PERIOD): 100}
    assert sum(b.deltas().values()) == 0


@pytest.mark.parametrize("amount", [0, -5])
def test_amounts_are_above_zero(amount: int) -> None:
    with pytest.raises(LedgerRuleBroken):
        book(pool=10).post(EntryKind.USAGE, company_pool(), consumed_by(OFFICE), amount)


def test_no_balance_below_zero() -> None:
    b = book(pool=10)
    with pytest.raises(LedgerRuleBroken):
        b.post(EntryKind.USAGE, company_pool(), consumed_by(OFFICE), 11)
    assert b.deltas() == {}
    with pytest.raises(LedgerRuleBroken):
        b.post(EntryKind.GRANT, company_pool(), company_pool(), 1)


def test_charge_posts_each_source_and_the_overage() -> None:
    b = book(pool=30, allowance=20, issued=-50)
    usage = Usage(OFFICE, "USD", UsageKind.CALLING, 100, OveragePolicy.ALLOW)
    split = ledger.charge(b, usage, uuid.uuid4(), PERIOD, True, None)
    assert split == Split(allowance=20, company_pool=30, overage=50)
    assert [(p.kind, p.debit.kind, p.amount) for p in b.postings] == [
        (EntryKind.USAGE, AccountKind.ALLOWANCE, 20),
        (EntryKind.USAGE, AccountKind.COMPANY_POOL, 30),
        (EntryKind.OVERAGE, AccountKind.OVERAGE, 50),
    ]
    assert b.balance(consumed_by(OFFICE)) == 100
    assert b.balance(overage_of(OFFICE)) == -50


def test_a_refused_usage_posts_nothing_not_even_the_periods_allowance() -> None:
    b = book()
    usage = Usage(OFFICE, "USD", UsageKind.CALLING, 100, OveragePolicy.REJECT)
    with pytest.raises(InsufficientCredits):
        ledger.charge(b, usage, uuid.uuid4(), PERIOD, False, None, opening_allowance=60)
    assert b.deltas() == {}
    split = ledger.charge(
        b,
        Usage(OFFICE, "USD", UsageKind.CALLING, 60, OveragePolicy.REJECT),
        uuid.uuid4(),
        PERIOD,
        False,
        None,
        opening_allowance=60,
    )
    assert split == Split(allowance=60)
    assert [posting.kind for posting in b.postings] == [EntryKind.ALLOWANCE, EntryKind.USAGE]


def test_pooling_on_moves_office_balances() -> None:
    other = uuid.uuid4()
    b = Ledger({company_pool(): 5, balance_of(OFFICE): 10, balance_of(other): 0})
    assert ledger.pool_office_balances(b, [OFFICE, other]) == {OFFICE: 10}
    assert b.balance(company_pool()) == 15


def test_violations_name_each_broken_rule() -> None:
    def account(kind_key: object, balance: int, account_id: int) -> LedgerAccount:
        return LedgerAccount(account_id, "USD", kind_key, balance)  # type: ignore[arg-type]

    good = [
        (account(issued(), -100, 1), -100, None),
        (account(company_pool(), 60, 2), 60, None),
        (account(consumed_by(OFFICE), 40, 3), 40, 40),
    ]
    assert ledger.violations(good) == []
    bad = [
        (account(issued(), -100, 1), -100, None),
        (account(company_pool(), -5, 2), 60, None),
        (account(consumed_by(OFFICE), 40, 3), 40, 39),
    ]
    rules = sorted(v.rule for v in ledger.violations(bad))
    assert rules == [
        "BALANCE_BELOW_ZERO",
        "BALANCE_NOT_SUM_OF_ENTRIES",
        "CONSUMED_NOT_SUM_OF_USAGE",
        "CURRENCY_NOT_BALANCED",
    ]
