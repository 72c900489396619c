"""Billing's use cases on the in-memory unit of work and pool (`tests/fakes/billing.py`)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from libs.common.clock import FakeClock
from services.billing.domain.model import Plan, PlanKind, Purchase, Quote
from services.billing.domain.purchase import Action
from services.billing.leases import LeaseKeeper
from services.billing.use_cases import plans, quotes
from services.billing.use_cases.purchases import PurchaseCommand, PurchaseSaga
from tests.fakes.billing import FakePool, InMemoryBillingUnitOfWork

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 16, tzinfo=UTC)  # half of January's cycle is left


class Crash(BaseException):
    """The driver's process dies here (nothing after it runs, its lease is left)."""


@dataclass
class Shop:
    """One company driven through billing's use cases, its pool in memory."""

    clock: FakeClock
    uow: InMemoryBillingUnitOfWork
    pool: FakePool
    saga: PurchaseSaga
    crash_after: list[Action] = field(default_factory=list)
    company_id: uuid.UUID = field(default_factory=uuid.uuid4)
    offices: dict[str, uuid.UUID] = field(default_factory=dict)

    async def plan(
        self,
        name: str,
        prices: dict[str, int] | None = None,
        kind: PlanKind = PlanKind.BUNDLE,
        contracted: bool = False,
        start: datetime = JAN_1,
    ) -> Plan:
        office_id = self.offices.setdefault(name, uuid.uuid4())
        command = plans.NewPlan(
            company_id=self.company_id,
            request_id=str(uuid.uuid4()),
            office_id=office_id,
            kind=kind,
            currency="USD",
            prices=prices if prices is not None else {"connect": 1000},
            contracted=contracted,
            start_at=start,
            primary=False,
        )
        plan = await plans.new_plan(command, self.uow, self.pool)
        async with self.uow.transaction() as tx:
            return await plans.add_plan(plan, tx)

    def enable(self) -> None:
        self.pool.enabled.add((self.company_id, "USD"))

    def add(self, office: str, n: int, state: str = "SPARE") -> list[str]:
        return self.pool.add(self.company_id, self.offices[office], "connect", n, state=state)

    def pooled(self, n: int, returned_by: str | None = None) -> list[str]:
        """Units resting in the pool (still in the grace of `returned_by`, when given)."""
        grace = self.offices[returned_by] if returned_by else None
        return self.pool.add(self.company_id, None, "connect", n, state="POOLED", in_grace_of=grace)

    def command(
        self,
        office: str = "a",
        quantity: int | None = 1,
        request_id: str | None = None,
        quote_id: uuid.UUID | None = None,
    ) -> PurchaseCommand:
        request_id = request_id or str(uuid.uuid4())
        payload = repr((office, quantity, quote_id)).encode()
        return PurchaseCommand(
            company_id=self.company_id,
            request_id=request_id,
            fingerprint=hashlib.sha256(payload).digest(),
            office_id=self.offices[office] if office else None,
            license_type="connect" if quote_id is None else None,
            quantity=quantity,
            quote_id=quote_id,
        )

    async def buy(self, office: str = "a", quantity: int = 1, **kw: object) -> Purchase:
        return await self.saga.purchase(self.command(office, quantity, **kw))  # type: ignore[arg-type]

    async def quote(self, office: str, quantity: int, hold: bool = False) -> Quote:
        command = quotes.QuoteCommand(
            self.company_id,
            self.offices[office],
            "connect",
            quantity,
            hold_request_id=str(uuid.uuid4()) if hold else None,
        )
        found = await quotes.quote(command, self.uow, self.pool, hold_seconds=120)
        if hold:
            async with self.uow.transaction() as tx:
                await quotes.save_quote(found, tx)
        return found

    def purchase(self, purchase_id: uuid.UUID) -> Purchase:
        return self.uow.state.purchases[purchase_id].purchase

    def only_purchase(self) -> Purchase:
        (stored,) = self.uow.state.purchases.values()
        return stored.purchase


def shop_on(clock: FakeClock) -> Shop:
    uow = InMemoryBillingUnitOfWork(clock)
    pool = FakePool(clock)
    crashes: list[Action] = []

    def observe(purchase: Purchase, done: Action) -> None:
        if done in crashes:
            crashes.remove(done)
            raise Crash(done)

    leases = LeaseKeeper(None, None, 5.0)  # type: ignore[arg-type]
    saga = PurchaseSaga(uow, pool, leases, hold_seconds=300, wait_seconds=0.0, observer=observe)
    return Shop(clock, uow, pool, saga, crashes)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def shop(clock: FakeClock) -> Shop:
    found = shop_on(clock)
    await found.plan("a")
    return found
