"""The draw order (docs/product.md, "Credits") as plain rules: every combination, no database."""

from __future__ import annotations

import uuid

import pytest

from services.credits.domain.drawing import Usage, draw_order, split_usage
from services.credits.domain.errors import InsufficientCredits
from services.credits.domain.model import AccountKind, OveragePolicy, Split, UsageKind

A = AccountKind
OFFICE = uuid.uuid4()


def usage(amount: int, kind: UsageKind = UsageKind.CALLING, reject: bool = False) -> Usage:
    policy = OveragePolicy.REJECT if reject else OveragePolicy.ALLOW
    return Usage(OFFICE, "USD", kind, amount, policy)


def available(allowance: int = 0, office: int = 0, pool: int = 0, ai: int = 0) -> dict[A, int]:
    return {
        A.ALLOWANCE: allowance,
        A.OFFICE_BALANCE: office,
        A.COMPANY_POOL: pool,
        A.AI_AGENT_CREDITS: ai,
    }


def test_draw_order_per_kind_and_pooling() -> None:
    assert draw_order(UsageKind.CALLING, True, True) == (A.ALLOWANCE, A.COMPANY_POOL)
    assert draw_order(UsageKind.MESSAGING, False, True) == (A.ALLOWANCE, A.OFFICE_BALANCE)
    assert draw_order(UsageKind.AI_AGENT, True, True) == (A.AI_AGENT_CREDITS,)
    assert draw_order(UsageKind.AI_AGENT, False, False) == ()


@pytest.mark.parametrize(
    ("pooling", "balances", "amount", "expected"),
    [
        # allowance left: allowance only
        (True, available(100, 50, 50), 80, Split(allowance=80)),
        (False, available(100, 50, 50), 80, Split(allowance=80)),
        # allowance partly: then the shared pool (on) or the office's own balance (off)
        (True, available(100, 50, 50), 130, Split(allowance=100, company_pool=30)),
        (False, available(100, 50, 50), 130, Split(allowance=100, office_balance=30)),
        # no allowance left
        (True, available(0, 50, 50), 40, Split(company_pool=40)),
        (False, available(0, 50, 50), 40, Split(office_balance=40)),
        # pool/balance empty: overage
        (True, available(10, 500, 0), 30, Split(allowance=10, overage=20)),
        (False, available(10, 0, 500), 30, Split(allowance=10, overage=20)),
        # everything used up
        (True, available(10, 10, 10), 100, Split(allowance=10, company_pool=10, overage=80)),
        (False, available(10, 10, 10), 100, Split(allowance=10, office_balance=10, overage=80)),
    ],
)
def test_split_with_overage_policy(
    pooling: bool, balances: dict[A, int], amount: int, expected: Split
) -> None:
    assert split_usage(usage(amount), balances, pooling, True) == expected
    if expected.overage:
        with pytest.raises(InsufficientCredits) as caught:
            split_usage(usage(amount, reject=True), balances, pooling, True)
        assert caught.value.reason == "INSUFFICIENT_CREDITS"
        assert caught.value.metadata["shortfall_minor"] == str(expected.overage)
    else:
        assert split_usage(usage(amount, reject=True), balances, pooling, True) == expected


@pytest.mark.parametrize("pooling", [True, False])
def test_ai_agent_draws_only_ai_credits(pooling: bool) -> None:
    balances = available(1000, 1000, 1000, ai=60)
    ai = usage(100, UsageKind.AI_AGENT)
    assert split_usage(ai, balances, pooling, True) == Split(ai_agent_credits=60, overage=40)
    # Not reachable (no primary office in this currency): all of it is overage.
    assert split_usage(ai, balances, pooling, False) == Split(overage=100)
    with pytest.raises(InsufficientCredits):
        split_usage(usage(100, UsageKind.AI_AGENT, reject=True), balances, pooling, False)
    assert split_usage(usage(60, UsageKind.AI_AGENT, reject=True), balances, pooling, True) == (
        Split(ai_agent_credits=60)
    )


def test_the_parts_always_add_up() -> None:
    for amount in (1, 7, 99, 1000):
        for pooling in (True, False):
            split = split_usage(usage(amount), available(5, 11, 13, 17), pooling, True)
            assert split.total == amount


@pytest.mark.parametrize(
    ("cap_left", "pool", "amount", "expected"),
    [
        (None, 100, 150, Split(allowance=10, company_pool=100, overage=40)),
        (50, 100, 150, Split(allowance=10, company_pool=50, overage=90)),
        (200, 100, 150, Split(allowance=10, company_pool=100, overage=40)),
        (0, 100, 5, Split(allowance=5)),
        (0, 100, 15, Split(allowance=10, overage=5)),
    ],
)
def test_a_cap_limits_only_what_is_drawn_from_the_shared_balance(
    cap_left: int | None, pool: int, amount: int, expected: Split
) -> None:
    split = split_usage(usage(amount), available(allowance=10, pool=pool), True, False, cap_left)
    assert split == expected


def test_a_refusal_says_when_the_cap_kept_the_usage_from_shared_credits() -> None:
    with pytest.raises(InsufficientCredits) as capped:
        split_usage(usage(60, reject=True), available(allowance=10, pool=100), True, False, 40)
    assert capped.value.metadata["limited_by"] == "OFFICE_CAP"
    assert capped.value.metadata["covered_minor"] == "50"
    with pytest.raises(InsufficientCredits) as short:
        split_usage(usage(60, reject=True), available(allowance=10, pool=30), True, False, 40)
    assert "limited_by" not in short.value.metadata
