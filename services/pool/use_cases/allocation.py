"""Allocation (`Acquire`, `Reserve`): the platform's hot path.

Requests are serialized per (company, currency) by a writer (`libs.common.coalescing`)
that runs whatever is waiting, for many keys at once, as one batch in one transaction:
the keys' locks sent with its BEGIN, one commit, and a fixed number of statements
however many keys (tenants) and groups of requests it serves (six round trips). Within
a key, requests are served in arrival order (docs/product.md, "Allocation"). The batch
keeps its own request_id record: it holds the locks that serialize every request that
could carry its keys, so it looks request ids up and records responses in its
transaction, and encodes each response once (`encode`, wired in app.py): the handler
sends those bytes.

The batch's SQL is `repository/allocation.py`; this module decides, `domain/allocation.py`
says what to take and in which order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.common import call_context
from libs.common.coalescing import Coalescer
from libs.common.database_outage import is_database_unreachable
from libs.common.errors import DomainError
from libs.common.idempotency import IdempotencyKey, reused
from libs.common.license_catalog import catalog
from services.pool.domain import allocation, errors, events
from services.pool.domain.model import (
    Assignee,
    Hold,
    Office,
    PassedOver,
    Pool,
    Receipt,
    Source,
    Unit,
)
from services.pool.repository.allocation import CandidateQuery, Handout
from services.pool.unit_of_work import PoolUnitOfWork, Tx
from services.pool.use_cases.offices import OfficeDirectory

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, str]  # (company, currency): one lock, requests in arrival order
Batches = Sequence[tuple[Key, Sequence["Allocate"]]]


@dataclass(frozen=True, slots=True)
class Allocate:
    """Acquire (hold_ttl None: units become ASSIGNED) or Reserve (units become HELD)."""

    request: IdempotencyKey
    company_id: uuid.UUID
    office_id: uuid.UUID
    license_type: str
    quantity: int
    sources: frozenset[Source]  # empty: every source
    assignees: tuple[Assignee, ...] = ()
    hold_ttl: timedelta | None = None
    allow_partial: bool = False

    @property
    def reserving(self) -> bool:
        return self.hold_ttl is not None


@dataclass(frozen=True, slots=True)
class Allocated:
    """What an allocation took (with its receipt), and for a reservation its hold (none
    when it took nothing)."""

    units: tuple[Unit, ...]
    receipt: Receipt
    hold: Hold | None
    reserved: bool


Result = bytes | BaseException


class Allocator:
    """Acquire and Reserve, coalesced per (company, currency)."""

    def __init__(
        self,
        uow: PoolUnitOfWork,
        offices: OfficeDirectory,
        encode: Callable[[Allocated], bytes],
        *,
        max_batch: int,
        max_waiting: int,
        max_keys: int,
        writers: int,
    ) -> None:
        self._uow = uow
        self._offices = offices
        self._encode = encode
        self._writer: Coalescer[Key, Allocate, bytes] = Coalescer.across_keys(
            self._batches,
            max_keys=max_keys,
            writers=writers,
            max_batch=max_batch,
            max_waiting=max_waiting,
            name="pool.allocation",
        )

    async def allocate(self, command: Allocate) -> bytes:
        """Runs in the next batch of the office's (company, currency); the encoded
        response, fresh or the one stored for its request_id."""
        office = await self._offices.get(command.company_id, command.office_id)
        return await self._writer.submit(
            (command.company_id, office.currency), command, call_context.time_remaining()
        )

    async def close(self) -> None:
        """Waits for the batches in flight."""
        await self._writer.close()

    async def _batches(self, batches: Batches) -> list[list[Result]]:
        try:
            return await self._together(batches)
        except Exception as error:
            if is_database_unreachable(error):  # alone, each would fail too
                return [[error] * len(commands) for _, commands in batches]
            if len(batches) == 1:
                ((key, commands),) = batches
                if len(commands) == 1:
                    return [[error]]
                log.warning(
                    "allocation batch failed; running its requests one by one", exc_info=True
                )
                return [[r for c in commands for r in (await self._batches([(key, [c])]))[0]]]
            log.warning("allocation batch failed; running its keys one by one", exc_info=True)
            return [(await self._batches([batch]))[0] for batch in batches]

    async def _together(self, batches: Batches) -> list[list[Result]]:
        """One transaction for the batches of several (company, currency) keys: looks the
        request ids up, hands out units group by group (same office, type and sources),
        stores receipts, holds and responses."""
        commands = [c for _, key_commands in batches for c in key_commands]
        key_of = [key for key, key_commands in batches for _ in key_commands]
        results: list[Result | None] = [None] * len(commands)
        leaders: dict[tuple[uuid.UUID, str], int] = {}  # the first of each request_id
        for index, command in enumerate(commands):
            leaders.setdefault(command.request.ident, index)
        keys = [key for key, _ in batches]
        async with self._uow.locked(keys) as tx:
            opened = await tx.allocations.open(
                keys,
                list({c.office_id for c in commands}),
                [commands[i].request for i in leaders.values()],
            )
            now, pools, offices, stored = opened.now, opened.pools, opened.offices, opened.stored
            groups: dict[tuple[Office, str, frozenset[Source]], list[int]] = {}
            for ident, index in leaders.items():
                command = commands[index]
                company_id, currency = key_of[index]
                office = offices.get(command.office_id)
                if ident in stored:
                    results[index] = stored[ident]
                elif office is None or (office.company_id, office.currency) != (
                    company_id,
                    currency,
                ):
                    self._offices.forget(company_id, command.office_id)
                    results[index] = errors.office_changed()
                else:
                    group = (office, command.license_type, command.sources)
                    groups.setdefault(group, []).append(index)
            handing = _HandingOut(tx, pools, now)
            outcomes = await handing.run(
                [
                    (office, code, requested, [commands[i] for i in indexes])
                    for (office, code, requested), indexes in groups.items()
                ]
            )
            done: list[tuple[IdempotencyKey, bytes]] = []
            receipts: list[Receipt] = []
            holds: list[Hold] = []
            for indexes, group_outcomes in zip(groups.values(), outcomes, strict=True):
                for index, outcome in zip(indexes, group_outcomes, strict=True):
                    if isinstance(outcome, DomainError):
                        results[index] = outcome
                        continue
                    encoded = self._encode(outcome)
                    results[index] = encoded
                    done.append((commands[index].request, encoded))
                    if outcome.receipt.receipt_id is not None:  # nothing taken: not stored
                        receipts.append(outcome.receipt)
                        tx.events.publish(
                            outcome.receipt.company_id,
                            *events.allocated(outcome.receipt, (u.unit_id for u in outcome.units)),
                        )
                    if outcome.hold is not None:
                        holds.append(outcome.hold)
            await tx.allocations.store(now, holds, receipts, done)
        for index, command in enumerate(commands):  # the same request_id twice in a batch
            leader = leaders[command.request.ident]
            if leader != index:
                same = commands[leader].request.fingerprint == command.request.fingerprint
                results[index] = results[leader] if same else reused(command.request)
        answers = [r if r is not None else errors.not_run() for r in results]
        split: list[list[Result]] = []
        for _, key_commands in batches:
            split.append(answers[: len(key_commands)])
            answers = answers[len(key_commands) :]
        return split


Group = tuple[Office, str, frozenset[Source], Sequence[Allocate]]


class _HandingOut:
    """The allocations of a batch's groups (same office and type each; requests in
    arrival order within a group): one candidate query for all of them, one statement
    that takes what is handed out."""

    def __init__(self, tx: Tx, pools: dict[Key, Pool], now: datetime) -> None:
        self._tx = tx
        self._pools = pools
        self._now = now

    async def run(self, groups: Sequence[Group]) -> list[list[Allocated | DomainError]]:
        queries: list[CandidateQuery] = []
        ahead: dict[tuple[uuid.UUID, str, str], int] = {}  # units earlier groups may take
        for office, code, requested, commands in groups:
            pool = self._pools[(office.company_id, office.currency)]
            sources = allocation.sources_to_try(requested, pool.enabled, catalog()[code].poolable)
            total = sum(c.quantity for c in commands)
            shared = (office.company_id, office.currency, code)
            # Groups of one pool see the same pooled units: each group looks far enough
            # to find its own after those the groups before it take.
            queries.append(CandidateQuery(office, code, sources, total + ahead.get(shared, 0)))
            ahead[shared] = ahead.get(shared, 0) + total
        found = await self._tx.allocations.candidates(queries, self._now)
        taken_ids: set[uuid.UUID] = set()
        shares_of: list[list[tuple[list[tuple[uuid.UUID, Source]], int]]] = []
        ids_of: list[list[tuple[uuid.UUID, uuid.UUID | None]]] = []
        handouts: list[Handout] = []
        for (office, _, _, commands), candidates in zip(groups, found, strict=True):
            free = [c for c in candidates if c[0] not in taken_ids]
            needs = [allocation.Need(c.quantity, c.allow_partial) for c in commands]
            shares = allocation.distribute(free, needs)
            ids = [(uuid.uuid4(), uuid.uuid4() if c.reserving else None) for c in commands]
            for c, (units, _), (receipt_id, hold_id) in zip(commands, shares, ids, strict=True):
                for n, (unit_id, source) in enumerate(units):
                    taken_ids.add(unit_id)
                    assignee = c.assignees[n] if c.assignees else None
                    handouts.append(
                        Handout(
                            unit_id,
                            office.company_id,
                            office.office_id,
                            hold_id,
                            assignee,
                            source,
                            receipt_id,
                            c.request.request_id,
                        )
                    )
            shares_of.append(shares)
            ids_of.append(ids)
        taken = await self._tx.allocations.hand_out(handouts, self._now)
        if len(taken) != len(handouts):
            raise errors.concurrent_change()
        return [
            await self._outcomes(group, shares, ids, taken)
            for group, shares, ids in zip(groups, shares_of, ids_of, strict=True)
        ]

    async def _outcomes(
        self,
        group: Group,
        shares: Sequence[tuple[list[tuple[uuid.UUID, Source]], int]],
        ids: Sequence[tuple[uuid.UUID, uuid.UUID | None]],
        taken: dict[uuid.UUID, Unit],
    ) -> list[Allocated | DomainError]:
        office, code, _, commands = group
        pool = self._pools[(office.company_id, office.currency)]
        poolable = catalog()[code].poolable
        explained: tuple[PassedOver, ...] | None = None
        outcomes: list[Allocated | DomainError] = []
        for command, (units, shortfall), record_ids in zip(commands, shares, ids, strict=True):
            need = allocation.Need(command.quantity, command.allow_partial)
            passed: tuple[PassedOver, ...] = ()
            if allocation.needs_explanation(shortfall):
                if explained is None:
                    bystanders = await self._tx.allocations.bystanders(office, code, self._now)
                    explained = allocation.passed_over(bystanders, pool.enabled, poolable)
                passed = explained
            receipt = allocation.receipt(
                office, code, need, units, shortfall, passed, record_ids, self._now
            )
            if allocation.refused(need, shortfall):
                outcomes.append(errors.NoLicenseAvailable(receipt))
                continue
            hold = None if command.hold_ttl is None else allocation.hold(receipt, command.hold_ttl)
            outcomes.append(
                Allocated(tuple(taken[u] for u, _ in units), receipt, hold, command.reserving)
            )
        return outcomes


async def get_receipt(uow: PoolUnitOfWork, company_id: uuid.UUID, receipt_id: uuid.UUID) -> Receipt:
    async with uow.reading() as tx:
        receipt = await tx.receipts.get(company_id, receipt_id)
    if receipt is None:
        raise errors.receipt_not_found(receipt_id)
    return receipt
