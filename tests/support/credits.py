"""Helpers for talking to the credits service in tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.clock import Clock
from libs.common.error_status import error_info
from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from services.credits.app import CreditsApp, start
from services.credits.config import CreditsSettings
from tests.support import tls


def rid() -> str:
    """A fresh request_id."""
    return str(uuid.uuid4())


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call ("" for a status without one)."""
    info = error_info(error)
    return info.reason if info else ""


def ts(instant: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


@asynccontextmanager
async def running_credits(
    database_url: str, clock: Clock | None = None, **overrides: object
) -> AsyncIterator[tuple[CreditsApp, credits_pb2_grpc.CreditsServiceStub]]:
    """The credits service on a free port, and a stub talking to it over gRPC."""
    settings = CreditsSettings(database_url=database_url, port=0, **overrides)  # type: ignore[arg-type]
    app = await start(settings, clock)
    channel = tls.channel(f"127.0.0.1:{app.port}")
    try:
        yield app, credits_pb2_grpc.CreditsServiceStub(channel)
    finally:
        await channel.close()
        await app.stop()


@dataclass
class CreditsCompany:
    """A company set up through the API: its id and offices by name."""

    stub: credits_pb2_grpc.CreditsServiceStub
    company_id: str = field(default_factory=rid)
    offices: dict[str, str] = field(default_factory=dict)

    async def office(
        self,
        name: str,
        currency: str = "USD",
        allowance: int = 0,
        primary: bool = False,
        policy: int = pb.OVERAGE_POLICY_ALLOW,
        anchor: datetime | None = None,
    ) -> str:
        office_id = self.offices.get(name) or rid()
        account = pb.Account(
            company_id=self.company_id,
            office_id=office_id,
            currency=currency,
            primary=primary,
            allowance_minor=allowance,
            overage_policy=policy,  # type: ignore[arg-type]
        )
        if anchor is not None:
            account.period_anchor_time.CopyFrom(ts(anchor))
        await self.stub.PutAccount(pb.PutAccountRequest(request_id=rid(), account=account))
        self.offices[name] = office_id
        return office_id

    async def pooling(self, currency: str, enabled: bool = True) -> pb.SetCreditPoolingResponse:
        response: pb.SetCreditPoolingResponse = await self.stub.SetCreditPooling(
            pb.SetCreditPoolingRequest(
                request_id=rid(), company_id=self.company_id, currency=currency, enabled=enabled
            )
        )
        return response

    async def grant(
        self,
        target: int,
        amount: int,
        office: str | None = None,
        currency: str = "",
        request_id: str | None = None,
    ) -> pb.GrantCreditsResponse:
        response: pb.GrantCreditsResponse = await self.stub.GrantCredits(
            pb.GrantCreditsRequest(
                request_id=request_id or rid(),
                company_id=self.company_id,
                target=target,  # type: ignore[arg-type]
                office_id=self.offices[office] if office else "",
                currency=currency,
                amount_minor=amount,
            )
        )
        return response

    def usage_request(
        self,
        office: str,
        amount: int,
        kind: int = pb.USAGE_KIND_CALLING,
        at: datetime | None = None,
        request_id: str | None = None,
    ) -> pb.RecordUsageRequest:
        request = pb.RecordUsageRequest(
            request_id=request_id or rid(),
            company_id=self.company_id,
            office_id=self.offices[office],
            kind=kind,  # type: ignore[arg-type]
            amount_minor=amount,
        )
        if at is not None:
            request.occur_time.CopyFrom(ts(at))
        return request

    async def use(
        self,
        office: str,
        amount: int,
        kind: int = pb.USAGE_KIND_CALLING,
        at: datetime | None = None,
        request_id: str | None = None,
    ) -> pb.UsageRecord:
        response: pb.RecordUsageResponse = await self.stub.RecordUsage(
            self.usage_request(office, amount, kind, at, request_id)
        )
        return response.usage

    async def balances(self, currency: str = "") -> pb.GetBalancesResponse:
        response: pb.GetBalancesResponse = await self.stub.GetBalances(
            pb.GetBalancesRequest(company_id=self.company_id, currency=currency)
        )
        return response

    async def office_balance(self, name: str) -> pb.OfficeBalance:
        office_id = self.offices[name]
        for office in (await self.balances()).offices:
            if office.office_id == office_id:
                return office
        raise AssertionError(f"no balance for office {name}")

    async def pool_balance(self, currency: str = "USD") -> int:
        for pool in (await self.balances(currency)).company_pools:
            if pool.currency == currency:
                return pool.balance_minor
        return 0

    async def usage(self, **filters: object) -> list[pb.UsageRecord]:
        found: list[pb.UsageRecord] = []
        token = ""
        while True:
            page = await self.stub.ListUsage(
                pb.ListUsageRequest(company_id=self.company_id, page_token=token, **filters)  # type: ignore[arg-type]
            )
            found.extend(page.usage)
            token = page.next_page_token
            if not token:
                return found

    async def entries(self) -> list[pb.LedgerEntry]:
        found: list[pb.LedgerEntry] = []
        token = ""
        while True:
            page = await self.stub.ListLedgerEntries(
                pb.ListLedgerEntriesRequest(
                    company_id=self.company_id, page_token=token, page_size=1000
                )
            )
            found.extend(page.entries)
            token = page.next_page_token
            if not token:
                return found

    async def cap(
        self, office: str, cap: int, request_id: str | None = None
    ) -> pb.SetOfficeCreditCapResponse:
        response: pb.SetOfficeCreditCapResponse = await self.stub.SetOfficeCreditCap(
            pb.SetOfficeCreditCapRequest(
                request_id=request_id or rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                cap_minor=cap,
            )
        )
        return response

    async def clear_cap(self, office: str) -> bool:
        response = await self.stub.ClearOfficeCreditCap(
            pb.ClearOfficeCreditCapRequest(
                request_id=rid(), company_id=self.company_id, office_id=self.offices[office]
            )
        )
        return bool(response.cleared)

    async def thresholds(
        self, *thresholds: pb.CreditThreshold, currency: str = "USD"
    ) -> pb.SetCreditThresholdsResponse:
        response: pb.SetCreditThresholdsResponse = await self.stub.SetCreditThresholds(
            pb.SetCreditThresholdsRequest(
                request_id=rid(),
                company_id=self.company_id,
                currency=currency,
                thresholds=list(thresholds),
            )
        )
        return response

    async def alerts(self, page_size: int = 0) -> list[pb.CreditAlert]:
        found: list[pb.CreditAlert] = []
        token = ""
        while True:
            page = await self.stub.ListCreditAlerts(
                pb.ListCreditAlertsRequest(
                    company_id=self.company_id, page_token=token, page_size=page_size
                )
            )
            found.extend(page.alerts)
            token = page.next_page_token
            if not token:
                return found

    async def check(self) -> pb.CheckLedgerResponse:
        response: pb.CheckLedgerResponse = await self.stub.CheckLedger(
            pb.CheckLedgerRequest(company_id=self.company_id)
        )
        return response


async def record_all(
    company: CreditsCompany,
    replicas: list[credits_pb2_grpc.CreditsServiceStub],
    requests: list[pb.RecordUsageRequest],
) -> list[pb.UsageRecord | grpc.aio.AioRpcError]:
    """Every request at once, spread over `replicas`: each one's record, or its error."""

    async def one(
        index: int, request: pb.RecordUsageRequest
    ) -> pb.UsageRecord | grpc.aio.AioRpcError:
        try:
            response = await replicas[index % len(replicas)].RecordUsage(request, timeout=60)
        except grpc.aio.AioRpcError as error:
            return error
        usage: pb.UsageRecord = response.usage
        return usage

    return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))


async def assert_books_balance(company: CreditsCompany, total: int) -> None:
    """The ledger is consistent, and totals, splits and balances add up to `total`."""
    check = await company.check()
    assert check.consistent, check.violations
    totals = await company.stub.GetUsageTotals(
        pb.GetUsageTotalsRequest(company_id=company.company_id)
    )
    assert [t.amount_minor for t in totals.company_totals] == [total]
    assert sum(t.amount_minor for t in totals.office_totals) == total
    for part in ("allowance_minor", "company_pool_minor", "overage_minor"):
        assert sum(getattr(t.split, part) for t in totals.office_totals) == getattr(
            totals.company_totals[0].split, part
        )
    balances = await company.balances("USD")
    assert all(o.allowance_remaining_minor >= 0 for o in balances.offices)
    assert balances.company_pools[0].balance_minor >= 0
    assert sum(o.consumed_minor for o in balances.offices) == total


# Offices of the concurrency races.
RACE_OFFICES = ("a", "b", "c")


async def assert_exactly_the_affordable_usages_recorded(
    company: CreditsCompany, replicas: list[credits_pb2_grpc.CreditsServiceStub]
) -> None:
    """300 usages of 10 from 3 offices at once, over `replicas`, against 3 x 50 of
    allowance and 1000 in the company pool: exactly the 115 affordable ones are recorded."""
    for name in RACE_OFFICES:
        await company.office(name, allowance=50, policy=pb.OVERAGE_POLICY_REJECT)
    await company.pooling("USD")
    await company.grant(pb.GRANT_TARGET_COMPANY_POOL, 1000, currency="USD")
    requests = [company.usage_request(RACE_OFFICES[i % 3], 10) for i in range(300)]
    results = await record_all(company, replicas, requests)

    recorded = [r for r in results if isinstance(r, pb.UsageRecord)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert {reason_of(e) for e in refused} == {"INSUFFICIENT_CREDITS"}, [
        (e.code(), reason_of(e), e.details())
        for e in refused
        if reason_of(e) != "INSUFFICIENT_CREDITS"
    ][:5]
    # 3 x 50 of allowance and 1000 of pool: 115 usages of 10 are affordable, no more.
    assert len(recorded) == 115
    assert sum(r.split.company_pool_minor for r in recorded) == 1000
    assert sum(r.split.allowance_minor for r in recorded) == 150
    assert all(r.split.overage_minor == 0 for r in recorded)
    for name in RACE_OFFICES:
        office_id = company.offices[name]
        assert sum(r.split.allowance_minor for r in recorded if r.office_id == office_id) == 50
    assert await company.pool_balance() == 0
    await assert_books_balance(company, 1150)
