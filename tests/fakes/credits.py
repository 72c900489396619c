"""The credits service in memory: its `Tx` (the same class the service uses) over
repositories kept in dictionaries, and a unit of work with the same all-or-nothing
transactions. The database's guarantees that the use cases rely on are kept here too:
no balance of the wrong sign (the CHECK constraints), one usage per request_id (the
unique index), one alert per threshold per period (the unique key), entries only ever
added."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from libs.common.clock import FakeClock
from services.credits.domain.caps import DrawKey
from services.credits.domain.ledger import sign_ok
from services.credits.domain.model import (
    AccountKey,
    AccountKind,
    CreditAlert,
    Grant,
    LedgerAccount,
    LedgerEntry,
    OfficeAccount,
    Period,
    PeriodOverage,
    Pooling,
    Posting,
    Split,
    Threshold,
    UsageLimits,
    UsageRecord,
    UsageTotal,
)
from services.credits.repository.ledger import CheckedAccount, EntryFilter, Loaded
from services.credits.repository.limits import StoredCap
from services.credits.repository.usage import UsageFilter
from services.credits.unit_of_work import Tx
from tests.fakes.unit_of_work import (
    EventTable,
    InMemoryOutbox,
    InMemoryRequestLog,
    InMemoryUnitOfWork,
    RequestTable,
)


class ConstraintViolated(Exception):
    """What the database would refuse (a CHECK constraint, a unique index)."""


@dataclass
class StoredAccount:
    account_id: int
    company_id: uuid.UUID
    currency: str
    key: AccountKey
    balance: int = 0


@dataclass
class StoredEntry:
    posting: Posting
    entry_id: int
    company_id: uuid.UUID
    currency: str
    created_at: datetime


@dataclass
class CreditsState:
    """The tables of the credits schema."""

    requests: RequestTable = field(default_factory=RequestTable)
    events: EventTable = field(default_factory=EventTable)
    offices: dict[uuid.UUID, OfficeAccount] = field(default_factory=dict)
    pooling: dict[tuple[uuid.UUID, str], Pooling] = field(default_factory=dict)
    accounts: dict[tuple[uuid.UUID, str, AccountKey], StoredAccount] = field(default_factory=dict)
    entries: list[StoredEntry] = field(default_factory=list)
    grants: dict[uuid.UUID, Grant] = field(default_factory=dict)
    usage: dict[uuid.UUID, UsageRecord] = field(default_factory=dict)
    caps: dict[tuple[uuid.UUID, uuid.UUID], tuple[int, datetime]] = field(default_factory=dict)
    draws: dict[tuple[uuid.UUID, uuid.UUID, datetime], int] = field(default_factory=dict)
    thresholds: dict[tuple[uuid.UUID, str], set[Threshold]] = field(default_factory=dict)
    top_ups: dict[tuple[uuid.UUID, str], int] = field(default_factory=dict)
    alerts: list[CreditAlert] = field(default_factory=list)
    locks: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # in the order taken
    last_id: int = 0  # of accounts and entries (identity columns)

    def new_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def account(self, company_id: uuid.UUID, currency: str, key: AccountKey) -> LedgerAccount:
        stored = self.accounts[(company_id, currency, key)]
        return LedgerAccount(stored.account_id, currency, key, stored.balance)


class FakeOffices:
    def __init__(self, state: CreditsState) -> None:
        self._s = state

    async def owner(self, office_id: uuid.UUID) -> uuid.UUID | None:
        office = self._s.offices.get(office_id)
        return office.company_id if office else None

    async def get(self, company_id: uuid.UUID, office_id: uuid.UUID) -> OfficeAccount | None:
        office = self._s.offices.get(office_id)
        return office if office is not None and office.company_id == company_id else None

    async def with_primary(
        self, company_id: uuid.UUID, office_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, OfficeAccount], OfficeAccount | None]:
        mine = [o for o in self._s.offices.values() if o.company_id == company_id]
        named = {o.office_id: o for o in mine if o.office_id in set(office_ids)}
        return named, next((o for o in mine if o.primary), None)

    async def usage_context(
        self,
        company_id: uuid.UUID,
        currency: str,
        office_ids: Sequence[uuid.UUID],
        alert_period_start: datetime,
    ) -> tuple[dict[uuid.UUID, OfficeAccount], OfficeAccount | None, Pooling, UsageLimits]:
        named, primary = await self.with_primary(company_id, office_ids)
        alerted = {
            a.threshold
            for a in self._s.alerts
            if (a.company_id, a.currency, a.period.start)
            == (company_id, currency, alert_period_start)
        }
        limits = UsageLimits(
            caps={
                office: cap
                for (company, office), (cap, _) in self._s.caps.items()
                if company == company_id and office in set(named)
            },
            pending=tuple(sorted(self._s.thresholds.get((company_id, currency), set()) - alerted)),
            top_up=self._s.top_ups.get((company_id, currency), 0),
        )
        return named, primary, await self.pooling(company_id, currency), limits

    async def put(self, office: OfficeAccount, now: datetime) -> OfficeAccount:
        if office.primary:
            for other in list(self._s.offices.values()):
                if other.company_id == office.company_id and other.office_id != office.office_id:
                    self._s.offices[other.office_id] = replace(other, primary=False)
        current = self._s.offices.get(office.office_id)
        created = current.created_at if current else now
        saved = replace(office, created_at=created, updated_at=now)
        self._s.offices[office.office_id] = saved
        return saved

    async def page(
        self, company_id: uuid.UUID, currency: str | None, after: uuid.UUID | None, limit: int
    ) -> list[OfficeAccount]:
        found = sorted(
            (
                o
                for o in self._s.offices.values()
                if o.company_id == company_id
                and (currency is None or o.currency == currency)
                and (after is None or o.office_id > after)
            ),
            key=lambda o: o.office_id,
        )
        return found[:limit]

    async def has_ledger(self, company_id: uuid.UUID, office_id: uuid.UUID) -> bool:
        if (office := self._s.offices.get(office_id)) is None or office.company_id != company_id:
            return False
        return (
            any(u.office_id == office_id for u in self._s.usage.values())
            or any(g.office_id == office_id for g in self._s.grants.values())
            or any(
                a.key.office_id == office_id and a.balance != 0 for a in self._s.accounts.values()
            )
        )

    async def of_currency(self, company_id: uuid.UUID, currency: str) -> list[uuid.UUID]:
        return sorted(
            o.office_id
            for o in self._s.offices.values()
            if o.company_id == company_id and o.currency == currency
        )

    async def pooling(self, company_id: uuid.UUID, currency: str) -> Pooling:
        found = self._s.pooling.get((company_id, currency))
        return found or Pooling(company_id, currency, False, None)

    async def company_pooling(self, company_id: uuid.UUID, currency: str | None) -> list[Pooling]:
        return [
            p
            for (company, c), p in self._s.pooling.items()
            if company == company_id and (currency is None or c == currency)
        ]

    async def set_pooling(
        self, company_id: uuid.UUID, currency: str, enabled: bool, now: datetime
    ) -> Pooling:
        pooling = Pooling(company_id, currency, enabled, now)
        self._s.pooling[(company_id, currency)] = pooling
        return pooling


class FakeLedger:
    def __init__(self, state: CreditsState, clock: FakeClock) -> None:
        self._s = state
        self._clock = clock

    async def lock(self, company_id: uuid.UUID, currency: str) -> datetime:
        return await self.lock_all([(company_id, currency)])

    async def lock_all(self, keys: Sequence[tuple[uuid.UUID, str]]) -> datetime:
        self._s.locks.extend(sorted(set(keys), key=lambda k: (str(k[0]), k[1])))
        return self._clock.now()

    async def now(self) -> datetime:
        return self._clock.now()

    async def load(
        self,
        company_id: uuid.UUID,
        currency: str,
        keys: Iterable[AccountKey],
        now: datetime,
        lookup_only: Iterable[AccountKey] = (),
    ) -> Loaded:
        balances, ids = {}, {}
        for key in keys:
            stored = self._s.accounts.get((company_id, currency, key))
            if stored is None:
                stored = StoredAccount(self._s.new_id(), company_id, currency, key)
                self._s.accounts[(company_id, currency, key)] = stored
            balances[key], ids[key] = stored.balance, stored.account_id
        for key in lookup_only:
            found = self._s.accounts.get((company_id, currency, key))
            if found is not None:
                balances[key], ids[key] = found.balance, found.account_id
        return Loaded(balances, ids)

    async def apply(
        self,
        company_id: uuid.UUID,
        currency: str,
        ids: dict[AccountKey, int],
        postings: Sequence[Posting],
        deltas: dict[AccountKey, int],
        now: datetime,
    ) -> None:
        for posting in postings:
            assert posting.debit in ids, "a posting from an account not loaded"
            assert posting.credit in ids, "a posting to an account not loaded"
            self._s.entries.append(
                StoredEntry(posting, self._s.new_id(), company_id, currency, now)
            )
        for key, delta in deltas.items():
            stored = self._s.accounts[(company_id, currency, key)]
            stored.balance += delta
            if not sign_ok(key.kind, stored.balance):
                raise ConstraintViolated(f"{key.code}: balance {stored.balance}")

    async def insert_grant(self, grant: Grant) -> None:
        self._s.grants[grant.grant_id] = grant

    async def of_kinds(
        self, company_id: uuid.UUID, currency: str | None, kinds: Sequence[AccountKind]
    ) -> list[LedgerAccount]:
        return [
            self._s.account(company, c, key)
            for (company, c, key) in self._s.accounts
            if company == company_id and (currency is None or c == currency) and key.kind in kinds
        ]

    async def by_key(
        self, company_id: uuid.UUID, wanted: Sequence[tuple[str, AccountKey]]
    ) -> list[LedgerAccount]:
        return [
            self._s.account(company_id, currency, key)
            for currency, key in wanted
            if (company_id, currency, key) in self._s.accounts
        ]

    async def checked(self, company_id: uuid.UUID) -> list[CheckedAccount]:
        sums: dict[tuple[str, AccountKey], int] = {}
        for stored in self._s.entries:
            if stored.company_id == company_id:
                p, c = stored.posting, stored.currency
                sums[(c, p.credit)] = sums.get((c, p.credit), 0) + p.amount
                sums[(c, p.debit)] = sums.get((c, p.debit), 0) - p.amount
        checked = []
        for (company, currency, key), stored_account in sorted(
            self._s.accounts.items(), key=lambda item: item[1].account_id
        ):
            if company != company_id:
                continue
            usage_sum = None
            if key.kind is AccountKind.CONSUMED:
                usage_sum = sum(
                    u.amount
                    for u in self._s.usage.values()
                    if u.company_id == company_id
                    and u.office_id == key.office_id
                    and u.currency == currency
                )
            checked.append(
                CheckedAccount(
                    LedgerAccount(stored_account.account_id, currency, key, stored_account.balance),
                    sums.get((currency, key), 0),
                    usage_sum,
                )
            )
        return checked

    async def count_entries(self, company_id: uuid.UUID) -> int:
        return sum(1 for e in self._s.entries if e.company_id == company_id)

    async def entries(self, where: EntryFilter, after: int | None, limit: int) -> list[LedgerEntry]:
        found = []
        for stored in self._s.entries:
            p = stored.posting
            debit = self._s.account(stored.company_id, stored.currency, p.debit)
            credit = self._s.account(stored.company_id, stored.currency, p.credit)
            if (
                stored.company_id != where.company_id
                or (where.currency is not None and stored.currency != where.currency)
                or (where.usage_id is not None and p.usage_id != where.usage_id)
                or (
                    where.office_id is not None
                    and where.office_id not in (p.debit.office_id, p.credit.office_id)
                )
                or (after is not None and stored.posting_id <= after)
            ):
                continue
            found.append(
                LedgerEntry(
                    stored.posting_id,
                    p.kind,
                    stored.currency,
                    debit,
                    credit,
                    p.amount,
                    p.usage_id,
                    p.grant_id,
                    stored.created_at,
                )
            )
        return found[:limit]


class FakeUsage:
    def __init__(self, state: CreditsState) -> None:
        self._s = state

    async def insert(self, company_id: uuid.UUID, records: Sequence[UsageRecord]) -> None:
        taken = {(u.company_id, u.request_id) for u in self._s.usage.values()}
        for record in records:
            if (company_id, record.request_id) in taken:
                raise ConstraintViolated(f"usage request_id {record.request_id} exists")
            assert record.split.total == record.amount
            assert record.occurred_at in record.period
            self._s.usage[record.usage_id] = record
            taken.add((company_id, record.request_id))

    async def get(self, company_id: uuid.UUID, usage_id: uuid.UUID) -> UsageRecord | None:
        found = self._s.usage.get(usage_id)
        return found if found is not None and found.company_id == company_id else None

    def _matching(self, where: UsageFilter) -> list[UsageRecord]:
        return sorted(
            (
                u
                for u in self._s.usage.values()
                if u.company_id == where.company_id
                and (where.office_id is None or u.office_id == where.office_id)
                and (where.kind is None or u.kind is where.kind)
                and (where.currency is None or u.currency == where.currency)
                and (where.start is None or u.occurred_at >= where.start)
                and (where.end is None or u.occurred_at < where.end)
            ),
            key=lambda u: (u.occurred_at, u.usage_id),
        )

    async def page(
        self, where: UsageFilter, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[UsageRecord]:
        found = self._matching(where)
        if after is not None:
            found = [u for u in found if (u.occurred_at, u.usage_id) > after]
        return found[:limit]

    async def totals(self, where: UsageFilter) -> tuple[list[UsageTotal], list[UsageTotal]]:
        offices: dict[tuple[str, uuid.UUID | None], UsageTotal] = {}
        for u in self._matching(replace(where, office_id=None)):
            for key in ((u.currency, u.office_id), (u.currency, None)):
                before = offices.get(key, UsageTotal(key[1], u.currency, 0, 0, Split()))
                offices[key] = UsageTotal(
                    key[1], u.currency, before.count + 1, before.amount + u.amount,
                    before.split + u.split,
                )  # fmt: skip
        ordered = sorted(offices.items(), key=lambda item: (item[0][0], str(item[0][1] or "~")))
        return (
            [t for (_, office), t in ordered if office is not None],
            [t for (_, office), t in ordered if office is None],
        )

    async def period_overage(
        self, company_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[PeriodOverage]:
        found: dict[tuple[str, datetime], PeriodOverage] = {}
        for u in self._s.usage.values():
            if u.company_id != company_id or not u.split.overage:
                continue
            if not start <= u.period.start < end:
                continue
            key = (str(u.office_id), u.period.start)
            before = found.get(key, PeriodOverage(u.office_id, u.currency, u.period, 0, 0))
            found[key] = replace(
                before, overage=before.overage + u.split.overage, count=before.count + 1
            )
        return [found[key] for key in sorted(found)]


class FakeLimits:
    def __init__(self, state: CreditsState) -> None:
        self._s = state

    async def set_cap(
        self, company_id: uuid.UUID, office_id: uuid.UUID, cap: int, now: datetime
    ) -> None:
        assert office_id in self._s.offices, "a cap of an office without an account"
        self._s.caps[(company_id, office_id)] = (cap, now)

    async def clear_cap(self, company_id: uuid.UUID, office_id: uuid.UUID) -> bool:
        for key in [k for k in self._s.draws if k[:2] == (company_id, office_id)]:
            del self._s.draws[key]  # ON DELETE CASCADE
        return self._s.caps.pop((company_id, office_id), None) is not None

    async def caps(
        self,
        company_id: uuid.UUID,
        office_ids: Sequence[uuid.UUID] | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[StoredCap]:
        found = []
        for (company, office_id), (cap, updated_at) in sorted(self._s.caps.items()):
            if company != company_id or (office_ids is not None and office_id not in office_ids):
                continue
            if after is not None and office_id <= after:
                continue
            office = self._s.offices[office_id]
            found.append(
                StoredCap(
                    company, office_id, office.currency, office.period_anchor, cap, updated_at
                )
            )
        return found[:limit]

    async def draws(
        self, company_id: uuid.UUID, periods: dict[DrawKey, Period]
    ) -> dict[DrawKey, int]:
        drawn = {}
        for (office_id, start), period in periods.items():
            stored = self._s.draws.get((company_id, office_id, start))
            drawn[(office_id, start)] = (
                stored
                if stored is not None
                else sum(
                    u.split.company_pool
                    for u in self._s.usage.values()
                    if u.company_id == company_id
                    and u.office_id == office_id
                    and u.occurred_at in period
                )
            )
        return drawn

    async def save_draws(self, company_id: uuid.UUID, drawn: dict[DrawKey, int]) -> None:
        for (office_id, start), value in drawn.items():
            if (company_id, office_id) not in self._s.caps:
                raise ConstraintViolated("draws of an office without a cap")
            self._s.draws[(company_id, office_id, start)] = value

    async def thresholds(self, company_id: uuid.UUID, currency: str) -> list[Threshold]:
        return sorted(self._s.thresholds.get((company_id, currency), set()))

    async def set_thresholds(
        self, company_id: uuid.UUID, currency: str, thresholds: Sequence[Threshold], now: datetime
    ) -> None:
        self._s.thresholds[(company_id, currency)] = set(thresholds)

    async def top_up(self, company_id: uuid.UUID, currency: str) -> int:
        return self._s.top_ups.get((company_id, currency), 0)

    async def set_top_up(
        self, company_id: uuid.UUID, currency: str, level: int, now: datetime
    ) -> None:
        self._s.top_ups[(company_id, currency)] = level

    async def record_alerts(
        self, company_id: uuid.UUID, alerts: Sequence[CreditAlert]
    ) -> list[CreditAlert]:
        taken = {(a.company_id, a.currency, a.threshold, a.period.start) for a in self._s.alerts}
        recorded = []
        for alert in alerts:
            key = (company_id, alert.currency, alert.threshold, alert.period.start)
            if key not in taken:  # ON CONFLICT DO NOTHING
                self._s.alerts.append(alert)
                recorded.append(alert)
                taken.add(key)
        return recorded

    async def alerts(
        self,
        company_id: uuid.UUID,
        currency: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[CreditAlert]:
        found = sorted(
            (
                a
                for a in self._s.alerts
                if a.company_id == company_id and (currency is None or a.currency == currency)
            ),
            key=lambda a: (a.created_at, a.alert_id),
        )
        if after is not None:
            found = [a for a in found if (a.created_at, a.alert_id) > after]
        return found[:limit]


class FakeRequestIds:
    async def purge(self, retention_hours: int) -> int:
        return 0


class InMemoryCreditsUnitOfWork(InMemoryUnitOfWork[CreditsState, Tx]):
    """The credits unit of work in memory; reads of one instant are plain reads (no
    transaction runs beside them)."""

    def __init__(self, clock: FakeClock, state: CreditsState | None = None) -> None:
        def bind(tables: CreditsState) -> Tx:
            return Tx(
                offices=FakeOffices(tables),  # type: ignore[arg-type]
                ledger=FakeLedger(tables, clock),  # type: ignore[arg-type]
                usage=FakeUsage(tables),  # type: ignore[arg-type]
                requests=InMemoryRequestLog(tables.requests),
                request_ids=FakeRequestIds(),  # type: ignore[arg-type]
                events=InMemoryOutbox(tables.events),
                limits=FakeLimits(tables),  # type: ignore[arg-type]
            )

        super().__init__(state or CreditsState(), bind)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Tx]:
        async with self.reading() as tx:
            yield tx


def encode_record(record: UsageRecord) -> bytes:
    """A codec for the usage writer that needs no protobuf: the record itself."""
    return pickle.dumps(record)


def decode_record(response: bytes) -> UsageRecord:
    record: UsageRecord = pickle.loads(response)
    return record
