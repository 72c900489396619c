"""The draw order (docs/product.md, "Credits") over real gRPC and PostgreSQL, one case
per combination."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from libs.common.clock import FakeClock
from libs.common.error_status import error_info
from licensing.credits.v1 import credits_pb2 as pb
from tests.support.credits import CreditsCompany, reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALLOW = pb.OVERAGE_POLICY_ALLOW
REJECT = pb.OVERAGE_POLICY_REJECT
POOL = pb.GRANT_TARGET_COMPANY_POOL
OFFICE = pb.GRANT_TARGET_OFFICE_BALANCE
AI = pb.GRANT_TARGET_AI_AGENT_CREDITS


def split(usage: pb.UsageRecord) -> tuple[int, int, int, int, int]:
    s = usage.split
    return (
        s.allowance_minor,
        s.office_balance_minor,
        s.company_pool_minor,
        s.ai_agent_credits_minor,
        s.overage_minor,
    )


async def test_pooling_off_allowance_then_own_balance_then_overage(company: CreditsCompany) -> None:
    await company.office("a", allowance=1000)
    await company.grant(OFFICE, 500, office="a")
    assert split(await company.use("a", 300)) == (300, 0, 0, 0, 0)
    assert split(await company.use("a", 1000)) == (700, 300, 0, 0, 0)
    assert split(await company.use("a", 400)) == (0, 200, 0, 0, 200)
    assert split(await company.use("a", 50)) == (0, 0, 0, 0, 50)
    office = await company.office_balance("a")
    assert (office.allowance_remaining_minor, office.balance_minor) == (0, 0)
    assert (office.consumed_minor, office.overage_minor) == (1750, 250)
    assert (await company.check()).consistent


async def test_pooling_off_never_touches_the_company_pool(company: CreditsCompany) -> None:
    await company.office("a")
    await company.grant(POOL, 1000, currency="USD")
    assert split(await company.use("a", 100)) == (0, 0, 0, 0, 100)
    assert await company.pool_balance() == 1000


async def test_pooling_off_reject_policy_refuses_and_writes_nothing(
    company: CreditsCompany,
) -> None:
    await company.office("a", allowance=100, policy=REJECT)
    await company.grant(OFFICE, 50, office="a")
    before = await company.entries()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.use("a", 151)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "INSUFFICIENT_CREDITS"
    assert await company.entries() == before
    assert await company.usage() == []
    # What the office can cover goes through.
    assert split(await company.use("a", 150)) == (100, 50, 0, 0, 0)


async def test_pooling_on_allowance_then_shared_pool_then_overage(company: CreditsCompany) -> None:
    await company.office("a", allowance=100)
    await company.office("b", allowance=100)
    await company.pooling("USD")
    await company.grant(POOL, 500, currency="USD")
    assert split(await company.use("a", 150)) == (100, 0, 50, 0, 0)
    assert split(await company.use("b", 500)) == (100, 0, 400, 0, 0)
    assert split(await company.use("a", 80)) == (0, 0, 50, 0, 30)
    assert await company.pool_balance() == 0
    totals = await company.stub.GetUsageTotals(
        pb.GetUsageTotalsRequest(company_id=company.company_id)
    )
    assert [t.amount_minor for t in totals.company_totals] == [730]
    assert sum(t.amount_minor for t in totals.office_totals) == 730
    assert (await company.check()).consistent


async def test_pooling_on_empty_pool_overage_or_reject(company: CreditsCompany) -> None:
    await company.office("allow", allowance=10)
    await company.office("reject", allowance=10, policy=REJECT)
    await company.pooling("USD")
    assert split(await company.use("allow", 25)) == (10, 0, 0, 0, 15)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.use("reject", 25)
    assert reason_of(caught.value) == "INSUFFICIENT_CREDITS"
    assert split(await company.use("reject", 10)) == (10, 0, 0, 0, 0)


async def test_turning_pooling_on_moves_office_balances_into_the_pool(
    company: CreditsCompany,
) -> None:
    await company.office("a")
    await company.office("b")
    await company.grant(OFFICE, 300, office="a")
    await company.grant(OFFICE, 200, office="b")
    turned_on = await company.pooling("USD")
    assert turned_on.company_pool_balance_minor == 500
    assert sorted(t.amount_minor for t in turned_on.transfers) == [200, 300]
    assert split(await company.use("b", 450)) == (0, 0, 450, 0, 0)
    # Office balances are not used while pooling is on: grants go to the pool.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.grant(OFFICE, 10, office="a")
    assert reason_of(caught.value) == "CREDIT_POOLING_ENABLED"
    # Turned off again: the shared balance stays, unused; offices use their own.
    await company.pooling("USD", enabled=False)
    await company.grant(OFFICE, 10, office="a")
    assert split(await company.use("a", 20)) == (0, 10, 0, 0, 10)
    assert await company.pool_balance() == 50
    assert (await company.check()).consistent


async def test_ai_agent_on_primary_uses_only_ai_credits(company: CreditsCompany) -> None:
    await company.office("hq", allowance=1000, primary=True)
    await company.pooling("USD")
    await company.grant(POOL, 1000, currency="USD")
    await company.grant(AI, 300)
    assert split(await company.use("hq", 200, kind=pb.USAGE_KIND_AI_AGENT)) == (0, 0, 0, 200, 0)
    assert split(await company.use("hq", 200, kind=pb.USAGE_KIND_AI_AGENT)) == (0, 0, 0, 100, 100)
    hq = await company.office_balance("hq")
    assert (hq.allowance_remaining_minor, hq.ai_agent_credits_minor) == (1000, 0)
    assert await company.pool_balance() == 1000


async def test_ai_agent_on_non_primary_draws_the_primary_offices_credits(
    company: CreditsCompany,
) -> None:
    await company.office("hq", primary=True)
    await company.office("branch", allowance=1000)
    await company.pooling("USD")
    await company.grant(POOL, 1000, currency="USD")
    await company.grant(AI, 100, office="hq")
    used = await company.use("branch", 150, kind=pb.USAGE_KIND_AI_AGENT)
    assert split(used) == (0, 0, 0, 100, 50)
    assert used.office_id == company.offices["branch"]
    assert (await company.office_balance("hq")).ai_agent_credits_minor == 0
    assert (await company.office_balance("branch")).overage_minor == 50
    assert await company.pool_balance() == 1000


async def test_ai_agent_in_another_currency_than_the_primary_has_no_credits(
    company: CreditsCompany,
) -> None:
    await company.office("hq", currency="USD", primary=True)
    await company.office("paris", currency="EUR", allowance=500)
    await company.office("lyon", currency="EUR", policy=REJECT)
    await company.grant(AI, 1000)
    assert split(await company.use("paris", 70, kind=pb.USAGE_KIND_AI_AGENT)) == (0, 0, 0, 0, 70)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.use("lyon", 70, kind=pb.USAGE_KIND_AI_AGENT)
    assert reason_of(caught.value) == "INSUFFICIENT_CREDITS"


async def test_ai_agent_credits_are_granted_to_the_primary_office_only(
    company: CreditsCompany,
) -> None:
    await company.office("branch")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.grant(AI, 100)
    assert reason_of(caught.value) == "NO_PRIMARY_OFFICE"
    await company.office("hq", primary=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.grant(AI, 100, office="branch")
    assert reason_of(caught.value) == "NOT_PRIMARY_OFFICE"
    granted = await company.grant(AI, 100, office="hq")
    assert (granted.grant.office_id, granted.balance_minor) == (company.offices["hq"], 100)


# --- office caps on the shared balance ------------------------------------------------------


async def test_a_capped_office_draws_the_pool_up_to_its_cap_then_overage(
    company: CreditsCompany,
) -> None:
    await company.office("a", allowance=100)
    await company.office("b", allowance=100)
    await company.pooling("USD")
    await company.grant(POOL, 1000, currency="USD")
    capped = await company.cap("a", 250)
    assert (capped.cap.cap_minor, capped.cap.drawn_minor, capped.cap.currency) == (250, 0, "USD")
    assert split(await company.use("a", 300)) == (100, 0, 200, 0, 0)
    assert split(await company.use("a", 80)) == (0, 0, 50, 0, 30)
    assert split(await company.use("a", 10)) == (0, 0, 0, 0, 10)
    # The other office has no cap and takes what the shared balance has left.
    assert split(await company.use("b", 900)) == (100, 0, 750, 0, 50)
    listed = await company.stub.ListOfficeCreditCaps(
        pb.ListOfficeCreditCapsRequest(company_id=company.company_id)
    )
    assert [(c.office_id, c.drawn_minor) for c in listed.caps] == [(company.offices["a"], 250)]
    assert (await company.check()).consistent


async def test_a_capped_office_with_reject_is_refused_past_its_cap_and_nothing_is_posted(
    company: CreditsCompany,
) -> None:
    await company.office("a", allowance=10, policy=REJECT)
    await company.pooling("USD")
    await company.grant(POOL, 1000, currency="USD")
    await company.cap("a", 40)
    before = await company.entries()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.use("a", 51)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "INSUFFICIENT_CREDITS"
    info = error_info(caught.value)
    assert info is not None
    assert info.metadata["limited_by"] == "OFFICE_CAP"
    assert await company.entries() == before
    assert split(await company.use("a", 50)) == (10, 0, 40, 0, 0)
    assert await company.pool_balance() == 960


async def test_the_cap_counts_draws_made_before_it_and_resets_each_period(
    company: CreditsCompany, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 3, 10, tzinfo=UTC))
    await company.office("a")
    await company.pooling("USD")
    await company.grant(POOL, 10_000, currency="USD")
    await company.use("a", 300)
    capped = await company.cap("a", 500)
    assert capped.cap.drawn_minor == 300
    assert split(await company.use("a", 300)) == (0, 0, 200, 0, 100)
    clock.set(datetime(2026, 4, 2, tzinfo=UTC))
    assert split(await company.use("a", 600)) == (0, 0, 500, 0, 100)
    # A late usage dated in March counts against March's cap.
    late = await company.use("a", 5, at=datetime(2026, 3, 31, tzinfo=UTC))
    assert split(late) == (0, 0, 0, 0, 5)
    assert await company.clear_cap("a") is True
    assert split(await company.use("a", 100)) == (0, 0, 100, 0, 0)
    # A new cap counts the period's draws from the usage records.
    assert (await company.cap("a", 550)).cap.drawn_minor == 600
    assert split(await company.use("a", 100)) == (0, 0, 0, 0, 100)
    assert (await company.check()).consistent


async def test_a_cap_does_not_limit_own_balances_or_ai_agent_credits(
    company: CreditsCompany,
) -> None:
    await company.office("hq", allowance=50, primary=True)
    await company.grant(OFFICE, 200, office="hq")
    await company.grant(AI, 100)
    await company.cap("hq", 0)
    assert split(await company.use("hq", 150)) == (50, 100, 0, 0, 0)
    assert split(await company.use("hq", 100, kind=pb.USAGE_KIND_AI_AGENT)) == (0, 0, 0, 100, 0)
    await company.pooling("USD")
    assert split(await company.use("hq", 10)) == (0, 0, 0, 0, 10)
    assert await company.pool_balance() == 100
