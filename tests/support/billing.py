"""Helpers for talking to the billing service (and the pool behind it) in tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.clock import Clock
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.billing.v1 import billing_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from services.billing.app import BillingApp, start
from services.billing.config import BillingSettings
from tests.support import tls
from tests.support.pool import rid


def ts(instant: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


@asynccontextmanager
async def running_billing(
    database_url: str,
    pool_address: str,
    clock: Clock | None = None,
    recovery: bool = False,
    **overrides: object,
) -> AsyncIterator[tuple[BillingApp, billing_pb2_grpc.BillingServiceStub]]:
    """The billing service on a free port, talking to the pool at `pool_address`."""
    settings = BillingSettings(
        database_url=database_url,
        port=0,
        pool_address=pool_address,
        **overrides,  # type: ignore[arg-type]
    )
    app = await start(settings, clock, recovery=recovery)
    channel = tls.channel(f"127.0.0.1:{app.port}")
    try:
        yield app, billing_pb2_grpc.BillingServiceStub(channel)
    finally:
        await channel.close()
        await app.stop()


@dataclass
class Shop:
    """A company driven through billing (plans, purchases) and the pool (setup, checks)."""

    billing: billing_pb2_grpc.BillingServiceStub
    pool: pool_pb2_grpc.PoolServiceStub
    company_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    offices: dict[str, str] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)

    async def plan(
        self,
        name: str,
        currency: str,
        prices: Mapping[str, int],
        start: datetime | None = None,
        kind: int = bpb.PLAN_KIND_BUNDLE,
        contracted: bool = False,
        primary: bool = False,
    ) -> bpb.Plan:
        office_id = self.offices.setdefault(name, str(uuid.uuid4()))
        response = await self.billing.CreatePlan(
            bpb.CreatePlanRequest(
                request_id=rid(),
                plan=bpb.Plan(
                    company_id=self.company_id,
                    office_id=office_id,
                    kind=kind,  # type: ignore[arg-type]
                    currency=currency,
                    prices=[
                        bpb.Price(
                            license_type=t,
                            unit_price=bpb.Money(currency_code=currency, amount_minor=p),
                        )
                        for t, p in prices.items()
                    ],
                    contracted=contracted,
                    start_time=ts(start) if start else None,
                    primary=primary,
                ),
            )
        )
        self.plans[name] = response.plan.plan_id
        plan: bpb.Plan = response.plan
        return plan

    async def update_prices(self, name: str, currency: str, prices: Mapping[str, int]) -> None:
        await self.billing.UpdatePlan(
            bpb.UpdatePlanRequest(
                request_id=rid(),
                plan=bpb.Plan(
                    company_id=self.company_id,
                    plan_id=self.plans[name],
                    prices=[
                        bpb.Price(
                            license_type=t,
                            unit_price=bpb.Money(currency_code=currency, amount_minor=p),
                        )
                        for t, p in prices.items()
                    ],
                ),
                update_mask=FieldMask(paths=["prices"]),
            )
        )

    async def add(self, office: str, license_type: str, quantity: int) -> list[str]:
        """Units created directly in the pool (setup, not a purchase)."""
        response = await self.pool.AddUnits(
            ppb.AddUnitsRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=license_type,
                quantity=quantity,
            )
        )
        return [u.unit_id for u in response.units]

    async def enable(self, currency: str) -> None:
        await self.pool.EnablePool(
            ppb.EnablePoolRequest(request_id=rid(), company_id=self.company_id, currency=currency)
        )

    async def acquire(self, office: str, license_type: str, quantity: int = 1) -> list[str]:
        response = await self.pool.Acquire(
            ppb.AcquireRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=license_type,
                quantity=quantity,
            )
        )
        return [u.unit_id for u in response.units]

    async def give_back(self, unit_ids: list[str]) -> None:
        await self.pool.ReturnUnits(
            ppb.ReturnUnitsRequest(request_id=rid(), company_id=self.company_id, unit_ids=unit_ids)
        )

    async def quote(
        self, office: str, license_type: str, quantity: int, hold: bool = False
    ) -> bpb.Quote:
        response = await self.billing.QuoteLicensePurchase(
            bpb.QuoteLicensePurchaseRequest(
                request_id=rid() if hold else "",
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=license_type,
                quantity=quantity,
                hold=hold,
            )
        )
        quote: bpb.Quote = response.quote
        return quote

    async def buy(
        self,
        office: str,
        license_type: str,
        quantity: int,
        request_id: str | None = None,
        quote_id: str = "",
    ) -> bpb.Purchase:
        response = await self.billing.PurchaseLicenses(
            bpb.PurchaseLicensesRequest(
                request_id=request_id or rid(),
                company_id=self.company_id,
                office_id=self.offices[office] if office else "",
                license_type=license_type,
                quantity=quantity,
                quote_id=quote_id,
            )
        )
        purchase: bpb.Purchase = response.purchase
        return purchase

    async def remove(self, office: str, license_type: str, quantity: int) -> list[str]:
        response = await self.billing.ScheduleRemoval(
            bpb.ScheduleRemovalRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=license_type,
                quantity=quantity,
            )
        )
        return list(response.unit_ids)

    async def close(self, period: str, request_id: str | None = None) -> bpb.Invoice:
        response = await self.billing.CloseCycle(
            bpb.CloseCycleRequest(
                request_id=request_id or rid(), company_id=self.company_id, period=period
            )
        )
        invoice: bpb.Invoice = response.invoice
        return invoice

    async def units(self, **filters: object) -> list[ppb.Unit]:
        found: list[ppb.Unit] = []
        token = ""
        while True:
            page = await self.pool.ListUnits(
                ppb.ListUnitsRequest(company_id=self.company_id, page_token=token, **filters)  # type: ignore[arg-type]
            )
            found.extend(page.units)
            token = page.next_page_token
            if not token:
                return found

    async def states(self, office: str | None = None, license_type: str = "") -> dict[str, int]:
        """Unit counts by state name (of one office, when given)."""
        filters: dict[str, object] = {"license_type": license_type}
        if office:
            filters["office_id"] = self.offices[office]
        counts: dict[str, int] = {}
        for unit in await self.units(**filters):
            name = ppb.UnitState.Name(unit.state).removeprefix("UNIT_STATE_")
            counts[name] = counts.get(name, 0) + 1
        return counts

    async def purchases(self) -> list[bpb.Purchase]:
        response = await self.billing.ListPurchases(
            bpb.ListPurchasesRequest(company_id=self.company_id, page_size=1000)
        )
        return list(response.purchases)
