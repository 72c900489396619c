"""The credits use cases on the in-memory unit of work (`tests/fakes/credits.py`)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from libs.common.clock import FakeClock
from libs.common.idempotency import IdempotencyKey
from services.credits.domain.model import (
    DEFAULT_PERIOD_ANCHOR,
    Balances,
    GrantTarget,
    LedgerCheck,
    OfficeAccount,
    OfficeBalance,
    OveragePolicy,
    UsageKind,
    UsageRecord,
)
from services.credits.use_cases import ledger
from services.credits.use_cases.accounts import PutAccount
from services.credits.use_cases.grants import GrantCredits, Granted, grant_credits
from services.credits.use_cases.pooling import PoolingChanged, SetPooling, set_pooling
from services.credits.use_cases.recording import RecordUsage, UsageRecorder
from services.credits.use_cases.routing import OfficeCurrencies
from tests.fakes.credits import InMemoryCreditsUnitOfWork, decode_record, encode_record

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
TOLERANCE = timedelta(minutes=5)


def usage_key(company_id: uuid.UUID, request_id: str, *payload: object) -> IdempotencyKey:
    """A key whose fingerprint covers the payload, as the handlers' keys do."""
    return IdempotencyKey(company_id, request_id, hashlib.sha256(repr(payload).encode()).digest())


@dataclass
class Books:
    """One company's credits, driven through the use cases."""

    clock: FakeClock
    uow: InMemoryCreditsUnitOfWork
    recorder: UsageRecorder
    put_account: PutAccount
    company_id: uuid.UUID = field(default_factory=uuid.uuid4)
    offices: dict[str, uuid.UUID] = field(default_factory=dict)

    async def office(
        self,
        name: str,
        currency: str = "USD",
        allowance: int = 0,
        primary: bool = False,
        reject: bool = False,
        anchor: datetime = DEFAULT_PERIOD_ANCHOR,
    ) -> OfficeAccount:
        office_id = self.offices.setdefault(name, uuid.uuid4())
        account = OfficeAccount(
            company_id=self.company_id,
            office_id=office_id,
            currency=currency,
            primary=primary,
            allowance=allowance,
            period_anchor=anchor,
            overage_policy=OveragePolicy.REJECT if reject else OveragePolicy.ALLOW,
        )
        async with self.uow.transaction() as tx:
            return await self.put_account(account, tx)

    async def pooling(self, enabled: bool = True, currency: str = "USD") -> PoolingChanged:
        async with self.uow.transaction() as tx:
            return await set_pooling(SetPooling(self.company_id, currency, enabled), tx)

    async def grant(
        self,
        target: GrantTarget,
        amount: int,
        office: str | None = None,
        currency: str | None = None,
    ) -> Granted:
        command = GrantCredits(
            company_id=self.company_id,
            target=target,
            office_id=self.offices[office] if office else None,
            currency=currency,
            amount=amount,
            note="",
        )
        async with self.uow.transaction() as tx:
            return await grant_credits(command, tx)

    def usage(
        self,
        office: str,
        amount: int,
        kind: UsageKind = UsageKind.CALLING,
        at: datetime | None = None,
        request_id: str | None = None,
        currency: str | None = None,
    ) -> RecordUsage:
        office_id = self.offices.get(office) or uuid.UUID(int=0)
        payload = (office_id, kind, amount, at, currency)
        return RecordUsage(
            key=usage_key(self.company_id, request_id or str(uuid.uuid4()), *payload),
            office_id=office_id,
            kind=kind,
            amount=amount,
            currency=currency,
            occurred_at=at,
        )

    async def use(self, office: str, amount: int, **fields: object) -> UsageRecord:
        response = await self.recorder.record(self.usage(office, amount, **fields))  # type: ignore[arg-type]
        return decode_record(response)

    async def balances(self, currency: str | None = None) -> Balances:
        return await ledger.get_balances(self.company_id, currency, self.uow)

    async def office_balance(self, name: str) -> OfficeBalance:
        found = await self.balances()
        return next(o for o in found.offices if o.office_id == self.offices[name])

    async def pool_balance(self, currency: str = "USD") -> int:
        found = await self.balances(currency)
        return found.pools[0].balance

    async def check(self) -> LedgerCheck:
        return await ledger.check_ledger(self.company_id, self.uow)


def books_on(clock: FakeClock, uow: InMemoryCreditsUnitOfWork) -> Books:
    currencies = OfficeCurrencies()
    recorder = UsageRecorder(
        uow, encode_record, currencies, TOLERANCE, max_batch=256, max_waiting=4096
    )
    return Books(clock, uow, recorder, PutAccount(currencies))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def books(clock: FakeClock) -> Books:
    return books_on(clock, InMemoryCreditsUnitOfWork(clock))
