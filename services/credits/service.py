"""The credits service's use cases: one method per use case, each one transaction.

Usage records go through a writer per (company, currency) that coalesces concurrent
records into one transaction: one advisory lock, one read of the balances, one insert of
the entries, one update per balance, one commit for the batch. Every other writer of the
same (company, currency) takes the same lock, on every replica. Mutating use cases take
a `Once` (request_id idempotency) and return the encoded response, fresh or replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from libs.common.clock import Clock
from libs.common.coalescing import Coalescer
from libs.common.database_outage import database_unavailable, is_database_unreachable
from libs.common.errors import Aborted, DomainError
from libs.common.idempotency import IdempotencyStore, Once, reused, run_once
from services.credits.config import CreditsSettings
from services.credits.domain import errors, ledger
from services.credits.domain.drawing import Usage
from services.credits.domain.errors import InsufficientCredits
from services.credits.domain.ledger import Ledger
from services.credits.domain.model import (
    AccountKey,
    AccountKind,
    Balances,
    Grant,
    GrantTarget,
    LedgerCheck,
    LedgerEntry,
    OfficeAccount,
    OfficeBalance,
    Period,
    PoolBalance,
    Pooling,
    Transfer,
    UsageKind,
    UsageRecord,
    UsageTotal,
    ai_agent_credits,
    allowance_of,
    balance_of,
    company_pool,
    consumed_by,
    issued,
    overage_of,
)
from services.credits.domain.periods import period_containing
from services.credits.repository import CreditsRepository, UsageFilter

log = logging.getLogger(__name__)

SCHEMA = "credits"


@dataclass(frozen=True, slots=True)
class RecordUsage:
    """One usage to charge; `request_id` is its idempotency id."""

    company_id: uuid.UUID
    office_id: uuid.UUID
    kind: UsageKind
    amount: int
    currency: str | None
    occurred_at: datetime | None
    request_id: str


@dataclass(frozen=True, slots=True)
class GrantCredits:
    company_id: uuid.UUID
    target: GrantTarget
    office_id: uuid.UUID | None
    currency: str | None
    amount: int
    note: str


@dataclass(frozen=True, slots=True)
class Granted:
    grant: Grant
    balance: int


@dataclass(frozen=True, slots=True)
class PoolingChanged:
    pooling: Pooling
    transfers: tuple[Transfer, ...]
    pool_balance: int


@dataclass(frozen=True, slots=True)
class _Job:
    command: RecordUsage
    once: Once[UsageRecord]


class CreditsService:
    def __init__(self, db: asyncpg.Pool, clock: Clock, settings: CreditsSettings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._repo = CreditsRepository()
        self._idempotency = IdempotencyStore(SCHEMA)
        self._future_tolerance = timedelta(seconds=settings.future_tolerance_seconds)
        self._currencies: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
        self._writer: Coalescer[tuple[uuid.UUID, str], _Job, bytes] = Coalescer(
            self._record_batch, max_batch=settings.max_batch, max_waiting=settings.max_waiting
        )

    # --- accounts -------------------------------------------------------------------------

    async def put_account(self, account: OfficeAccount, once: Once[OfficeAccount]) -> bytes:
        async with self._db.acquire() as conn, conn.transaction():

            async def effect() -> OfficeAccount:
                owner = await self._repo.office_owner(conn, account.office_id)
                if owner is not None and owner != account.company_id:
                    raise errors.office_not_found(account.office_id)
                current = await self._repo.get_office(conn, account.company_id, account.office_id)
                currencies = {account.currency}
                if current is not None:
                    currencies.add(current.currency)
                now = None
                for currency in sorted(currencies):
                    now = await self._repo.lock(
                        conn, account.company_id, currency, self._clock.sql_now()
                    )
                assert now is not None
                if (
                    current is not None
                    and current.currency != account.currency
                    and await self._repo.office_has_ledger(conn, account.office_id)
                ):
                    raise errors.office_currency_locked(account.office_id, current.currency)
                return await self._repo.put_office(conn, account, now)

            encoded = await run_once(conn, self._idempotency, once, effect)
        self._currencies.pop((account.company_id, account.office_id), None)
        return encoded

    async def get_account(self, company_id: uuid.UUID, office_id: uuid.UUID) -> OfficeAccount:
        async with self._db.acquire() as conn:
            office = await self._repo.get_office(conn, company_id, office_id)
        if office is None:
            raise errors.office_not_found(office_id)
        return office

    async def list_accounts(
        self, company_id: uuid.UUID, currency: str | None, after: uuid.UUID | None, limit: int
    ) -> list[OfficeAccount]:
        async with self._db.acquire() as conn:
            return await self._repo.list_offices(conn, company_id, currency, after, limit)

    async def _currency_of(self, company_id: uuid.UUID, office_id: uuid.UUID) -> str:
        """An office's currency, for routing; verified again inside each transaction."""
        cached = self._currencies.get((company_id, office_id))
        if cached is None:
            cached = (await self.get_account(company_id, office_id)).currency
            self._currencies[(company_id, office_id)] = cached
        return cached

    # --- pooling --------------------------------------------------------------------------

    async def set_pooling(
        self, company_id: uuid.UUID, currency: str, enabled: bool, once: Once[PoolingChanged]
    ) -> bytes:
        """Turns unified credit pooling on (the offices' own balances of the currency move
        into the shared company balance) or off (the shared balance stays, unused)."""
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, company_id, currency, self._clock.sql_now())

            async def effect() -> PoolingChanged:
                pooling = await self._repo.get_pooling(conn, company_id, currency)
                transfers: tuple[Transfer, ...] = ()
                if enabled and not pooling.enabled:
                    offices = await self._repo.offices_of_currency(conn, company_id, currency)
                    keys = [issued(), company_pool(), *(balance_of(o) for o in offices)]
                    loaded = await self._repo.load_accounts(conn, company_id, currency, keys, now)
                    book = Ledger(loaded.balances)
                    moved = ledger.pool_office_balances(book, offices)
                    await self._repo.apply(
                        conn, company_id, currency, loaded.ids, book.postings, book.deltas(), now
                    )
                    transfers = tuple(
                        Transfer(
                            office,
                            AccountKind.OFFICE_BALANCE,
                            AccountKind.COMPANY_POOL,
                            currency,
                            amount,
                        )
                        for office, amount in moved.items()
                    )
                if enabled != pooling.enabled:
                    pooling = await self._repo.set_pooling(conn, company_id, currency, enabled, now)
                loaded = await self._repo.load_accounts(
                    conn, company_id, currency, [company_pool()], now
                )
                return PoolingChanged(pooling, transfers, loaded.balances[company_pool()])

            return await run_once(conn, self._idempotency, once, effect)

    async def get_pooling(self, company_id: uuid.UUID, currency: str) -> Pooling:
        async with self._db.acquire() as conn:
            return await self._repo.get_pooling(conn, company_id, currency)

    # --- grants ---------------------------------------------------------------------------

    async def grant(self, command: GrantCredits, once: Once[Granted]) -> bytes:
        """Adds credits to the shared company balance, an office's own balance (refused
        while pooling is on for its currency), or the primary office's AI agent credits."""
        office_id, currency = await self._grant_route(command)
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, command.company_id, currency, self._clock.sql_now())

            async def effect() -> Granted:
                # Routing facts may have changed before the lock: check them again.
                if (office_id, currency) != await self._grant_route(command, conn):
                    raise Aborted("ACCOUNT_CHANGED", "the account changed meanwhile; retry")
                if command.target is GrantTarget.OFFICE_BALANCE:
                    pooling = await self._repo.get_pooling(conn, command.company_id, currency)
                    if pooling.enabled:
                        raise errors.pooling_enabled(currency)
                target = ledger.grant_account(command.target, office_id)
                loaded = await self._repo.load_accounts(
                    conn, command.company_id, currency, [issued(), target], now
                )
                book = Ledger(loaded.balances)
                grant = Grant(
                    grant_id=uuid.uuid4(),
                    company_id=command.company_id,
                    target=command.target,
                    office_id=office_id,
                    currency=currency,
                    amount=command.amount,
                    note=command.note,
                    created_at=now,
                )
                ledger.grant(book, target, command.amount, grant.grant_id)
                await self._repo.insert_grant(conn, grant)
                await self._repo.apply(
                    conn,
                    command.company_id,
                    currency,
                    loaded.ids,
                    book.postings,
                    book.deltas(),
                    now,
                )
                return Granted(grant, book.balance(target))

            return await run_once(conn, self._idempotency, once, effect)

    async def _grant_route(
        self, command: GrantCredits, conn: asyncpg.Connection | None = None
    ) -> tuple[uuid.UUID | None, str]:
        """The office and currency a grant goes to."""
        if conn is None:
            async with self._db.acquire() as own:
                return await self._grant_route(command, own)
        if command.target is GrantTarget.COMPANY_POOL:
            assert command.currency is not None
            return None, command.currency
        if command.target is GrantTarget.OFFICE_BALANCE:
            assert command.office_id is not None
            office = await self._repo.get_office(conn, command.company_id, command.office_id)
            if office is None:
                raise errors.office_not_found(command.office_id)
        else:
            named, primary = await self._repo.offices_and_primary(
                conn, command.company_id, [command.office_id] if command.office_id else []
            )
            if command.office_id is not None and command.office_id not in named:
                raise errors.office_not_found(command.office_id)
            if primary is None:
                raise errors.no_primary_office()
            if command.office_id is not None and command.office_id != primary.office_id:
                raise errors.not_primary_office(command.office_id)
            office = primary
        if command.currency is not None and command.currency != office.currency:
            raise errors.currency_mismatch("currency", command.currency, office.currency)
        return office.office_id, office.currency

    # --- usage ----------------------------------------------------------------------------

    async def record_usage(
        self, command: RecordUsage, once: Once[UsageRecord], time_remaining: float | None = None
    ) -> bytes:
        """Charges one usage in the next batch of its office's (company, currency)."""
        currency = await self._currency_of(command.company_id, command.office_id)
        if command.currency is not None and command.currency != currency:
            raise errors.currency_mismatch("currency", command.currency, currency)
        return await self._writer.submit(
            (command.company_id, currency), _Job(command, once), time_remaining
        )

    async def record_usages(
        self,
        items: Sequence[tuple[RecordUsage, Once[UsageRecord]]],
        time_remaining: float | None = None,
    ) -> list[bytes | Exception]:
        """Charges many usages; each one succeeds or fails on its own."""

        async def one(command: RecordUsage, once: Once[UsageRecord]) -> bytes | Exception:
            try:
                return await self.record_usage(command, once, time_remaining)
            except DomainError as error:
                return error
            except Exception as error:
                if is_database_unreachable(error):
                    return database_unavailable()
                log.exception("unexpected error recording usage %s", command.request_id)
                return error

        return list(await asyncio.gather(*(one(c, o) for c, o in items)))

    async def _record_batch(
        self, key: tuple[uuid.UUID, str], jobs: Sequence[_Job]
    ) -> Sequence[bytes | BaseException]:
        try:
            return await self._record_together(key, jobs)
        except Exception as error:
            if len(jobs) == 1 or is_database_unreachable(error):  # one by one would fail too
                return [error] * len(jobs)
            log.warning("usage batch failed; recording its usages one by one", exc_info=True)
            results: list[bytes | BaseException] = []
            for job in jobs:
                results.extend(await self._record_batch(key, [job]))
            return results

    async def _record_together(
        self, key: tuple[uuid.UUID, str], jobs: Sequence[_Job]
    ) -> list[bytes | BaseException]:
        company_id, currency = key
        results: list[bytes | BaseException | None] = [None] * len(jobs)
        leaders: dict[tuple[uuid.UUID, str], int] = {}
        for index, job in enumerate(jobs):
            leaders.setdefault(job.once.key.ident, index)
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, company_id, currency, self._clock.sql_now())
            stored = await self._idempotency.claim(
                conn, [jobs[i].once.key for i in leaders.values()]
            )
            fresh = [i for ident, i in leaders.items() if ident not in stored]
            for ident, index in leaders.items():
                if ident in stored:
                    results[index] = stored[ident]
            offices, primary = await self._repo.offices_and_primary(
                conn, company_id, list({jobs[i].command.office_id for i in fresh})
            )
            pooling = await self._repo.get_pooling(conn, company_id, currency)
            ai_key = ai_agent_credits() if primary and primary.currency == currency else None
            done, failed = [], []
            planned: list[tuple[int, OfficeAccount, datetime, Period]] = []
            for index in fresh:
                job = jobs[index]
                try:
                    office = offices.get(job.command.office_id)
                    if office is None or office.currency != currency:
                        self._currencies.pop((company_id, job.command.office_id), None)
                        raise Aborted("OFFICE_CHANGED", "the office changed meanwhile; retry")
                    occurred = job.command.occurred_at or now
                    if occurred > now + self._future_tolerance:
                        raise errors.occurred_in_future(occurred, now)
                    period = period_containing(office.period_anchor, occurred)
                except DomainError as error:
                    results[index] = error
                    failed.append(job.once.key)
                    continue
                planned.append((index, office, occurred, period))

            keys: set[AccountKey] = {issued(), company_pool()}
            if ai_key is not None:
                keys.add(ai_key)
            for _, office, _, _ in planned:
                o = office.office_id
                keys.update((balance_of(o), consumed_by(o), overage_of(o)))
            periods = {allowance_of(o.office_id, p.start) for _, o, _, p in planned}
            loaded = await self._repo.load_accounts(
                conn, company_id, currency, keys, now, lookup_only=periods
            )
            unopened = {k for k in periods if k not in loaded.ids}
            book = Ledger({**{k: 0 for k in unopened}, **loaded.balances})
            opened: set[AccountKey] = set()
            records: list[UsageRecord] = []
            for index, office, occurred, period in planned:
                job = jobs[index]
                usage_id = uuid.uuid4()
                allowance_key = allowance_of(office.office_id, period.start)
                opening = (
                    office.allowance
                    if allowance_key in unopened and allowance_key not in opened
                    else None
                )
                try:
                    split = ledger.charge(
                        book,
                        Usage(
                            office.office_id,
                            currency,
                            job.command.kind,
                            job.command.amount,
                            office.overage_policy,
                        ),
                        usage_id,
                        period.start,
                        pooling.enabled,
                        ai_key,
                        opening,
                    )
                except InsufficientCredits as error:
                    results[index] = error
                    failed.append(job.once.key)
                    continue
                if opening is not None:
                    opened.add(allowance_key)
                record = UsageRecord(
                    usage_id=usage_id,
                    request_id=job.command.request_id,
                    company_id=company_id,
                    office_id=office.office_id,
                    kind=job.command.kind,
                    currency=currency,
                    amount=job.command.amount,
                    occurred_at=occurred,
                    period=period,
                    split=split,
                    recorded_at=now,
                )
                encoded = job.once.encode(record)
                results[index] = encoded
                done.append((job.once.key, encoded))
                records.append(record)
            ids = dict(loaded.ids)
            if opened:
                created = await self._repo.load_accounts(conn, company_id, currency, opened, now)
                ids.update(created.ids)
            await self._repo.insert_usage(conn, company_id, records)
            await self._repo.apply(
                conn, company_id, currency, ids, book.postings, book.deltas(), now
            )
            await self._idempotency.complete(conn, done)
            await self._idempotency.abandon(conn, failed)
        for index, job in enumerate(jobs):
            leader = leaders[job.once.key.ident]
            if leader != index:
                same = jobs[leader].once.key.fingerprint == job.once.key.fingerprint
                results[index] = results[leader] if same else reused(job.once.key)
        return [r if r is not None else Aborted("NOT_RUN", "not run") for r in results]

    async def get_usage(self, company_id: uuid.UUID, usage_id: uuid.UUID) -> UsageRecord:
        async with self._db.acquire() as conn:
            record = await self._repo.get_usage(conn, company_id, usage_id)
        if record is None:
            raise errors.usage_not_found(usage_id)
        return record

    async def list_usage(
        self, where: UsageFilter, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[UsageRecord]:
        async with self._db.acquire() as conn:
            return await self._repo.list_usage(conn, where, after, limit)

    async def usage_totals(
        self,
        company_id: uuid.UUID,
        currency: str | None,
        kind: UsageKind | None,
        start: datetime | None,
        end: datetime | None,
    ) -> tuple[list[UsageTotal], list[UsageTotal]]:
        async with self._db.acquire() as conn:
            return await self._repo.usage_totals(conn, company_id, currency, kind, start, end)

    # --- balances and the ledger ----------------------------------------------------------

    async def balances(self, company_id: uuid.UUID, currency: str | None) -> Balances:
        """Every balance of the company as of one instant (one transaction)."""
        async with (
            self._db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            now = await self._repo.now(conn, self._clock.sql_now())
            offices: list[OfficeAccount] = []
            after = None
            while True:
                page = await self._repo.list_offices(conn, company_id, currency, after, 1000)
                offices.extend(page)
                if len(page) < 1000:
                    break
                after = page[-1].office_id
            poolings = {
                p.currency: p for p in await self._repo.company_pooling(conn, company_id, currency)
            }
            accounts = await self._repo.company_accounts(
                conn,
                company_id,
                currency,
                [
                    AccountKind.COMPANY_POOL,
                    AccountKind.AI_AGENT_CREDITS,
                    AccountKind.OFFICE_BALANCE,
                    AccountKind.CONSUMED,
                    AccountKind.OVERAGE,
                ],
            )
            periods = {o.office_id: period_containing(o.period_anchor, now) for o in offices}
            current = await self._repo.accounts_by_code(
                conn,
                company_id,
                [
                    (o.currency, allowance_of(o.office_id, periods[o.office_id].start).code)
                    for o in offices
                ],
            )
        by_key = {(a.currency, a.key): a.balance for a in (*accounts, *current)}
        primary = next((o for o in offices if o.primary), None)
        office_balances = []
        for o in offices:
            period = periods[o.office_id]
            allowance_key = allowance_of(o.office_id, period.start)
            office_balances.append(
                OfficeBalance(
                    office_id=o.office_id,
                    currency=o.currency,
                    primary=o.primary,
                    period=period,
                    allowance=o.allowance,
                    allowance_remaining=by_key.get((o.currency, allowance_key), o.allowance),
                    balance=by_key.get((o.currency, balance_of(o.office_id)), 0),
                    ai_agent_credits=by_key.get((o.currency, ai_agent_credits()), 0)
                    if o is primary
                    else 0,
                    consumed=by_key.get((o.currency, consumed_by(o.office_id)), 0),
                    overage=-by_key.get((o.currency, overage_of(o.office_id)), 0),
                )
            )
        currencies = {o.currency for o in offices} | set(poolings)
        currencies |= {a.currency for a in accounts if a.key.kind is AccountKind.COMPANY_POOL}
        if currency is not None:
            currencies = {currency}
        pools = tuple(
            PoolBalance(
                c,
                poolings[c].enabled if c in poolings else False,
                by_key.get((c, company_pool()), 0),
            )
            for c in sorted(currencies)
        )
        return Balances(now, pools, tuple(office_balances))

    async def list_entries(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        usage_id: uuid.UUID | None,
        after: int | None,
        limit: int,
    ) -> list[LedgerEntry]:
        async with self._db.acquire() as conn:
            return await self._repo.list_entries(
                conn, company_id, office_id, currency, usage_id, after, limit
            )

    async def check_ledger(self, company_id: uuid.UUID) -> LedgerCheck:
        """Proves the company's ledger as of one instant: balances equal the sums of
        their entries, no balance below zero, every currency balanced."""
        async with (
            self._db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            now = await self._repo.now(conn, self._clock.sql_now())
            checked = await self._repo.check_accounts(conn, company_id)
            entries = await self._repo.count_entries(conn, company_id)
        found = ledger.violations((c.account, c.entries_sum, c.usage_sum) for c in checked)
        return LedgerCheck(now, len(checked), entries, tuple(found))

    # --- housekeeping ---------------------------------------------------------------------

    async def run_purger(self) -> None:
        """Purges idempotency keys past their retention until cancelled."""
        while True:
            try:
                async with self._db.acquire() as conn:
                    await self._idempotency.purge(conn, self._settings.idempotency_retention_hours)
            except (OSError, asyncpg.PostgresError) as error:
                if not is_database_unreachable(error):  # the database watch logs outages
                    log.warning("idempotency purge failed; will retry", exc_info=True)
            await asyncio.sleep(self._settings.purge_interval_seconds)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._writer.close()
