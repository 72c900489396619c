"""Thresholds on the shared company balance and their alerts over real gRPC and
PostgreSQL: one alert per threshold per period, also when usages race on two replicas;
the new RPCs' contract (idempotency, tenant scoping, pagination, reasons)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from services.credits.domain.model import CreditAlert, Period, Threshold, ThresholdKind
from services.credits.repository.limits import LimitsRepository
from tests.support.credits import CreditsCompany, reason_of, rid, running_credits

pytestmark = pytest.mark.asyncio(loop_scope="session")

POOL = pb.GRANT_TARGET_COMPANY_POOL


def balance(value: int) -> pb.CreditThreshold:
    return pb.CreditThreshold(balance_minor=value)


def percent(value: int) -> pb.CreditThreshold:
    return pb.CreditThreshold(percent=value)


def crossed(alerts: list[pb.CreditAlert]) -> list[tuple[str, int]]:
    return sorted((a.threshold.WhichOneof("level") or "", a.level_minor) for a in alerts)


@pytest_asyncio.fixture(loop_scope="session")
async def second_replica(
    database_url: str, clock: FakeClock
) -> AsyncIterator[credits_pb2_grpc.CreditsServiceStub]:
    async with running_credits(database_url, clock) as (_, stub):
        yield stub


async def _pooled(company: CreditsCompany, shared: int, *offices: str) -> None:
    for name in offices:
        await company.office(name)
    await company.pooling("USD")
    await company.grant(POOL, shared, currency="USD")


async def test_crossing_records_one_alert_per_threshold_per_month(
    company: CreditsCompany, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 5, 20, tzinfo=UTC))
    await _pooled(company, 1000, "a")
    stored = await company.thresholds(percent(20), balance(500))
    assert [t.WhichOneof("level") for t in stored.thresholds] == ["balance_minor", "percent"]
    await company.use("a", 400)
    assert await company.alerts() == []
    crossing = await company.use("a", 200)  # 400 left
    [alert] = await company.alerts()
    assert (alert.threshold.balance_minor, alert.level_minor, alert.balance_minor) == (
        500,
        500,
        400,
    )
    assert (alert.usage_id, alert.office_id) == (crossing.usage_id, company.offices["a"])
    assert alert.period_start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 5, 1, tzinfo=UTC)
    await company.use("a", 250)  # 150 left: 20 % of 1000 is 200
    assert crossed(await company.alerts()) == [("balance_minor", 500), ("percent", 200)]
    # Topped up (the top-up level is 1150 now) and crossed again this month: nothing new.
    await company.grant(POOL, 1000, currency="USD")
    got = await company.stub.GetCreditThresholds(
        pb.GetCreditThresholdsRequest(company_id=company.company_id, currency="USD")
    )
    assert got.top_up_level_minor == 1150
    await company.use("a", 1100)
    assert len(await company.alerts()) == 2
    # June: the same thresholds alert again.
    clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    await company.grant(POOL, 2000, currency="USD")  # 2050: 20 % is 410
    await company.use("a", 1700)  # 350 left
    alerts = await company.alerts(page_size=1)
    assert len(alerts) == 4
    assert crossed(alerts[2:]) == [("balance_minor", 500), ("percent", 410)]


async def test_concurrent_usages_on_two_replicas_record_one_alert_per_threshold(
    company: CreditsCompany, second_replica: credits_pb2_grpc.CreditsServiceStub
) -> None:
    await _pooled(company, 3000, "a", "b", "c")
    await company.thresholds(balance(2000), balance(1000), percent(5))
    replicas = [company.stub, second_replica]
    requests = [company.usage_request(("a", "b", "c")[i % 3], 10) for i in range(290)]
    await asyncio.gather(
        *(replicas[i % 2].RecordUsage(r, timeout=60) for i, r in enumerate(requests))
    )
    assert await company.pool_balance() == 100
    alerts = await company.alerts()
    assert crossed(alerts) == [("balance_minor", 1000), ("balance_minor", 2000), ("percent", 150)]
    # Each alert names the usage that took the balance across its level.
    usage = {u.usage_id: u for u in await company.usage()}
    assert all(a.usage_id in usage for a in alerts)
    assert (await company.check()).consistent


async def test_mutations_are_idempotent_and_tenant_scoped(
    company: CreditsCompany, stub: credits_pb2_grpc.CreditsServiceStub
) -> None:
    await company.office("a")
    request_id = rid()
    first = await company.cap("a", 100, request_id=request_id)
    again = await company.cap("a", 100, request_id=request_id)
    assert again == first
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.cap("a", 200, request_id=request_id)
    assert reason_of(caught.value) == "REQUEST_ID_REUSED"

    stranger = CreditsCompany(stub)
    stranger.offices["a"] = company.offices["a"]
    for call in (stranger.cap("a", 5), stranger.clear_cap("a")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert reason_of(caught.value) == "OFFICE_NOT_FOUND"
    listed = await stub.ListOfficeCreditCaps(
        pb.ListOfficeCreditCapsRequest(company_id=stranger.company_id)
    )
    assert list(listed.caps) == []
    await company.office("b")
    await company.cap("b", 7)
    first_page = await stub.ListOfficeCreditCaps(
        pb.ListOfficeCreditCapsRequest(company_id=company.company_id, page_size=1)
    )
    second_page = await stub.ListOfficeCreditCaps(
        pb.ListOfficeCreditCapsRequest(
            company_id=company.company_id, page_size=1, page_token=first_page.next_page_token
        )
    )
    assert sorted(c.office_id for c in [*first_page.caps, *second_page.caps]) == sorted(
        company.offices.values()
    )
    assert second_page.next_page_token == ""
    await company.thresholds(balance(10))
    got = await stub.GetCreditThresholds(
        pb.GetCreditThresholdsRequest(company_id=stranger.company_id, currency="USD")
    )
    assert list(got.thresholds) == []
    assert await stranger.alerts() == []


@pytest.mark.parametrize(
    ("thresholds", "reason"),
    [
        ([percent(0)], "INVALID_FIELD"),
        ([percent(100)], "INVALID_FIELD"),
        ([balance(-1)], "INVALID_AMOUNT"),
        ([balance(10**12 + 1)], "AMOUNT_TOO_LARGE"),
        ([pb.CreditThreshold()], "MISSING_FIELD"),
        ([balance(5), balance(5)], "DUPLICATE_THRESHOLD"),
        ([balance(i) for i in range(11)], "TOO_MANY_THRESHOLDS"),
    ],
)
async def test_bad_thresholds_are_refused_with_a_reason(
    company: CreditsCompany, thresholds: list[pb.CreditThreshold], reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.thresholds(*thresholds)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == reason


async def test_bad_caps_are_refused_with_a_reason(company: CreditsCompany) -> None:
    await company.office("a")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.cap("a", -1)
    assert reason_of(caught.value) == "INVALID_AMOUNT"
    company.offices["ghost"] = rid()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.cap("ghost", 1)
    assert reason_of(caught.value) == "OFFICE_NOT_FOUND"


async def test_the_unique_key_keeps_one_alert_when_two_transactions_record_it(
    database_url: str, credits_service: object
) -> None:
    """The writers' lock already serializes a (company, currency); the unique key is the
    guarantee beside it: two transactions recording the same alert keep one."""
    company_id, usage_id, office_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    may = Period(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))

    async def record(conn: asyncpg.Connection) -> list[CreditAlert]:
        alert = CreditAlert(
            uuid.uuid4(), company_id, "USD", Threshold(ThresholdKind.BALANCE, 500), may,
            500, 400, usage_id, office_id, datetime(2026, 5, 2, tzinfo=UTC),
        )  # fmt: skip
        async with conn.transaction():
            recorded = await LimitsRepository(conn).record_alerts(company_id, [alert])
            await asyncio.sleep(0.05)
        return recorded

    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        outcomes = await asyncio.gather(record(first), record(second))
        count = await first.fetchval(
            "SELECT count(*) FROM credits.credit_alerts WHERE company_id = $1", company_id
        )
    finally:
        await first.close()
        await second.close()
    assert count == 1
    # Each says what it recorded, so only the recorded alert is published.
    assert sorted(len(recorded) for recorded in outcomes) == [0, 1]
