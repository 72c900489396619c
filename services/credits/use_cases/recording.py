"""RecordUsage and BatchRecordUsage: usages charged in batches, serialized per (company,
currency).

Concurrent usages of one (company, currency) wait for their key's turn in a writer
(`libs/common/coalescing.py`) that charges everything waiting, for many keys at once, in
one transaction: the keys' advisory locks in one statement (every other credits writer
of a key, on every replica, takes the same), one lookup of the request_ids, one write of
the responses and one commit for the whole batch; per key one read of the offices, the
pooling switch, the caps and the pending thresholds, one read of the balances, one insert
of the records and one of the entries, one update of the balances. Many companies with a
usage or two each share one commit instead of paying one each. Only a key with capped
offices reads and writes their draws of the period, and only one that crossed a
threshold writes its alerts (in the same transaction as the usage, published as events).

Idempotency: the lock serializes every request that could carry a key of the batch, so
the request_ids are looked up and the responses recorded in the batch's transaction
(`RequestLog.lookup` and `record`); a failed usage leaves nothing behind and may be
retried. Each response is encoded once, here (`encode`, wired by the app): the bytes
stored for the request_id are the bytes answered, now and on every replay.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.common.coalescing import Coalescer
from libs.common.database_outage import database_unavailable, is_database_unreachable
from libs.common.errors import DomainError
from libs.common.idempotency import IdempotencyKey, reused
from libs.common.reasons import Reason
from services.credits.domain import alerts, charging, errors, events
from services.credits.domain.alerts import ThresholdWatch
from services.credits.domain.caps import PoolDraws
from services.credits.domain.charging import Charging, Placed
from services.credits.domain.errors import InsufficientCredits
from services.credits.domain.model import OfficeAccount, UsageKind, UsageRecord
from services.credits.unit_of_work import CreditsUnitOfWork, Tx
from services.credits.use_cases.routing import OfficeCurrencies

log = logging.getLogger(__name__)

# The response stored for a usage's request_id and answered for it (fresh or replayed).
Response = bytes
EncodeUsage = Callable[[UsageRecord], Response]
_Lane = tuple[uuid.UUID, str]  # (company, currency)
_Batches = Sequence[tuple[_Lane, Sequence["RecordUsage"]]]


@dataclass(frozen=True, slots=True)
class RecordUsage:
    """One usage to charge; `key` is its request_id (the same for RecordUsage and for a
    record of BatchRecordUsage)."""

    key: IdempotencyKey
    office_id: uuid.UUID
    kind: UsageKind
    amount: int
    currency: str | None  # if given, must be the office's
    occurred_at: datetime | None  # None: now

    @property
    def company_id(self) -> uuid.UUID:
        return self.key.company_id


class UsageRecorder:
    """The writers of usage, one per (company, currency)."""

    def __init__(
        self,
        uow: CreditsUnitOfWork,
        encode: EncodeUsage,
        currencies: OfficeCurrencies,
        future_tolerance: timedelta,
        max_batch: int,
        max_waiting: int,
        max_keys: int = 64,
        writers: int = 2,
    ) -> None:
        self._uow = uow
        self._encode = encode
        self._currencies = currencies
        self._future_tolerance = future_tolerance
        self._writer: Coalescer[_Lane, RecordUsage, Response] = Coalescer.across_keys(
            self._run_batches,
            max_keys=max_keys,
            writers=writers,
            max_batch=max_batch,
            max_waiting=max_waiting,
            name="credits.usage",
        )

    async def record(self, command: RecordUsage, time_remaining: float | None = None) -> Response:
        """Charges one usage in the next batch of its office's (company, currency);
        `time_remaining` is the caller's deadline."""
        currency = await self._currencies.currency_of(
            command.company_id, command.office_id, self._uow
        )
        if command.currency is not None and command.currency != currency:
            raise errors.currency_mismatch("currency", command.currency, currency)
        return await self._writer.submit((command.company_id, currency), command, time_remaining)

    async def record_each(
        self, commands: Sequence[RecordUsage], time_remaining: float | None = None
    ) -> list[Response | Exception]:
        """Charges many usages; each one succeeds or fails on its own."""

        async def one(command: RecordUsage) -> Response | Exception:
            try:
                return await self.record(command, time_remaining)
            except DomainError as error:
                return error
            except Exception as error:
                if is_database_unreachable(error):
                    return database_unavailable()
                log.exception("unexpected error recording usage %s", command.key.request_id)
                return error

        return list(await asyncio.gather(*(one(c) for c in commands)))

    async def close(self) -> None:
        """Waits for the batches in flight."""
        await self._writer.close()

    async def _run_batches(self, batches: _Batches) -> list[list[Response | BaseException]]:
        try:
            return await self._charge_together(batches)
        except Exception as error:
            if is_database_unreachable(error):  # one by one would fail too
                return [[error] * len(commands) for _, commands in batches]
            if len(batches) > 1:
                log.warning("usage batch failed; recording its keys one by one", exc_info=True)
                return [(await self._run_batches([batch]))[0] for batch in batches]
            ((lane, commands),) = batches
            if len(commands) == 1:
                return [[error]]
            log.warning("usage batch failed; recording its usages one by one", exc_info=True)
            return [[r for c in commands for r in (await self._run_batches([(lane, [c])]))[0]]]

    async def _charge_together(self, batches: _Batches) -> list[list[Response | BaseException]]:
        """One transaction for the batches of several keys; each usage gets its own outcome."""
        commands = [c for _, lane_commands in batches for c in lane_commands]
        results: list[Response | BaseException | None] = [None] * len(commands)
        leaders: dict[tuple[uuid.UUID, str], int] = {}  # the first of each request_id
        for index, command in enumerate(commands):
            leaders.setdefault(command.key.ident, index)
        lane_of = [lane for lane, lane_commands in batches for _ in lane_commands]
        async with self._uow.transaction() as tx:
            now = await tx.ledger.lock_all([lane for lane, _ in batches])
            stored = await tx.requests.lookup([commands[i].key for i in leaders.values()])
            fresh: dict[_Lane, list[tuple[int, RecordUsage]]] = {}
            for ident, index in leaders.items():
                if ident in stored:
                    results[index] = stored[ident]
                else:
                    fresh.setdefault(lane_of[index], []).append((index, commands[index]))
            done: list[tuple[IdempotencyKey, Response]] = []
            for lane, lane_fresh in fresh.items():
                done.extend(await self._charge(tx, lane, now, lane_fresh, results))
            await tx.requests.record(done)
        for index, command in enumerate(commands):
            leader = leaders[command.key.ident]
            if leader != index:
                same = commands[leader].key.fingerprint == command.key.fingerprint
                results[index] = results[leader] if same else reused(command.key)
        answers = [r if r is not None else _not_run() for r in results]
        split: list[list[Response | BaseException]] = []
        for _, lane_commands in batches:
            split.append(answers[: len(lane_commands)])
            answers = answers[len(lane_commands) :]
        return split

    async def _charge(
        self,
        tx: Tx,
        lane: _Lane,
        now: datetime,
        fresh: Sequence[tuple[int, RecordUsage]],
        results: list[Response | BaseException | None],
    ) -> list[tuple[IdempotencyKey, Response]]:
        """Charges the usages not seen before, in order; sets their outcomes in
        `results` and returns the responses to record for their request_ids."""
        company_id, currency = lane
        alert_period = alerts.alert_period(now)
        offices, primary, pooling, limits = await tx.offices.usage_context(
            company_id,
            currency,
            list({command.office_id for _, command in fresh}),
            alert_period.start,
        )
        placed: list[tuple[int, RecordUsage, Placed]] = []
        for index, command in fresh:
            try:
                usage = self._place(command, offices.get(command.office_id), currency, now)
            except DomainError as error:
                results[index] = error
                continue
            placed.append((index, command, usage))
        ai_credits = charging.ai_credits_for(currency, primary)
        accounts, allowances = charging.accounts_to_load((p for _, _, p in placed), ai_credits)
        loaded = await tx.ledger.load(company_id, currency, accounts, now, lookup_only=allowances)
        draw_periods = charging.draws_to_load((p for _, _, p in placed), limits.caps)
        drawn = await tx.limits.draws(company_id, draw_periods) if pooling.enabled else {}
        watch = (
            ThresholdWatch(limits.pending, limits.top_up, alert_period) if limits.pending else None
        )
        book = Charging(
            loaded.balances,
            allowances,
            pooling.enabled,
            ai_credits,
            PoolDraws(limits.caps, drawn),
            watch,
        )
        records: list[UsageRecord] = []
        done: list[tuple[IdempotencyKey, Response]] = []
        for index, command, usage in placed:
            try:
                record = book.charge(usage, uuid.uuid4(), now)
            except InsufficientCredits as error:
                results[index] = error
                continue
            response = self._encode(record)
            results[index] = response
            records.append(record)
            done.append((command.key, response))
            tx.events.publish(company_id, events.USAGE_RECORDED, events.usage_recorded(record))
        ids = loaded.ids
        if book.opened:  # the periods opened now get their allowance accounts
            opened = await tx.ledger.load(company_id, currency, book.opened, now)
            ids = {**ids, **opened.ids}
        await tx.usage.insert(company_id, records)
        await tx.ledger.apply(
            company_id, currency, ids, book.ledger.postings, book.ledger.deltas(), now
        )
        await tx.limits.save_draws(company_id, book.draws.drawn)
        if watch is not None and watch.alerts:
            # Only the alerts recorded are crossings: the unique key drops repeats.
            for alert in await tx.limits.record_alerts(company_id, watch.alerts):
                tx.events.publish(
                    company_id, events.THRESHOLD_CROSSED, events.threshold_crossed(alert)
                )
        return done

    def _place(
        self, command: RecordUsage, office: OfficeAccount | None, currency: str, now: datetime
    ) -> Placed:
        if office is None or office.currency != currency:  # it moved since it was routed
            self._currencies.forget(command.company_id, command.office_id)
            raise errors.office_changed(command.office_id)
        return charging.place(
            office,
            command.key.request_id,
            command.kind,
            command.amount,
            command.occurred_at,
            now,
            self._future_tolerance,
        )


def _not_run() -> DomainError:
    return Reason.NOT_RUN.error("the usage was not recorded (its batch failed); retry")
