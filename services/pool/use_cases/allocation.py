"""Allocation (`Acquire`, `Reserve`): the platform's hot path.

Requests go through one writer per (company, currency) (`libs.common.coalescing`), which
runs whatever is waiting as one batch in one transaction: one lock, one commit. Within a
batch, requests are served in arrival order (docs/product.md, "Allocation"). The batch
keeps its own request_id record: it holds the lock that serializes every request that
could carry the key, so it looks keys up and records responses in its transaction, and
encodes each response once (`encode`, wired in app.py): the handler sends those bytes.

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
from services.pool.domain import allocation, errors
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
from services.pool.repository.allocation import Handout
from services.pool.unit_of_work import PoolUnitOfWork, Tx
from services.pool.use_cases.offices import OfficeDirectory

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, str]  # (company, currency): one writer, one lock


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
    ) -> None:
        self._uow = uow
        self._offices = offices
        self._encode = encode
        self._writer: Coalescer[Key, Allocate, bytes] = Coalescer(
            self._batch, max_batch=max_batch, max_waiting=max_waiting, name="pool.allocation"
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

    async def _batch(self, key: Key, commands: Sequence[Allocate]) -> Sequence[Result]:
        try:
            return await self._together(key, commands)
        except Exception as error:
            if len(commands) == 1 or is_database_unreachable(error):  # alone, it fails too
                return [error] * len(commands)
            log.warning("allocation batch failed; running its requests one by one", exc_info=True)
            results: list[Result] = []
            for command in commands:
                results.extend(await self._batch(key, [command]))
            return results

    async def _together(self, key: Key, commands: Sequence[Allocate]) -> list[Result]:
        """One transaction for a batch of one (company, currency): looks the request ids
        up, hands out units group by group (same office, type and sources), stores
        receipts, holds and responses."""
        company_id, currency = key
        results: list[Result | None] = [None] * len(commands)
        leaders: dict[tuple[uuid.UUID, str], int] = {}  # the first of each request_id
        for index, command in enumerate(commands):
            leaders.setdefault(command.request.ident, index)
        async with self._uow.transaction() as tx:
            now = await tx.locks.take(company_id, currency)
            pool, offices = await tx.allocations.pool_and_offices(
                company_id, currency, list({c.office_id for c in commands})
            )
            stored = await tx.requests.lookup([commands[i].request for i in leaders.values()])
            groups: dict[tuple[Office, str, frozenset[Source]], list[int]] = {}
            for ident, index in leaders.items():
                command = commands[index]
                office = offices.get(command.office_id)
                if ident in stored:
                    results[index] = stored[ident]
                elif office is None or office.currency != currency:
                    self._offices.forget(company_id, command.office_id)
                    results[index] = errors.office_changed()
                else:
                    group = (office, command.license_type, command.sources)
                    groups.setdefault(group, []).append(index)
            done: list[tuple[IdempotencyKey, bytes]] = []
            receipts: list[Receipt] = []
            holds: list[Hold] = []
            for (office, code, requested), indexes in groups.items():
                group_commands = [commands[i] for i in indexes]
                outcomes = await _hand_out(tx, office, code, requested, group_commands, pool, now)
                for index, outcome in zip(indexes, outcomes, strict=True):
                    if isinstance(outcome, DomainError):
                        results[index] = outcome
                        continue
                    encoded = self._encode(outcome)
                    results[index] = encoded
                    done.append((commands[index].request, encoded))
                    if outcome.receipt.receipt_id is not None:  # nothing taken: not stored
                        receipts.append(outcome.receipt)
                    if outcome.hold is not None:
                        holds.append(outcome.hold)
            await tx.allocations.insert_records(company_id, currency, now, holds, receipts)
            await tx.requests.record(done)
        for index, command in enumerate(commands):  # the same request_id twice in a batch
            leader = leaders[command.request.ident]
            if leader != index:
                same = commands[leader].request.fingerprint == command.request.fingerprint
                results[index] = results[leader] if same else reused(command.request)
        return [r if r is not None else errors.not_run() for r in results]


async def _hand_out(
    tx: Tx,
    office: Office,
    code: str,
    requested: frozenset[Source],
    commands: Sequence[Allocate],
    pool: Pool,
    now: datetime,
) -> list[Allocated | DomainError]:
    """Allocations of one office and type, in arrival order: one candidate query, one
    statement that takes what is handed out."""
    poolable = catalog()[code].poolable
    sources = allocation.sources_to_try(requested, pool.enabled, poolable)
    total = sum(c.quantity for c in commands)
    candidates = await tx.allocations.candidates(office, code, sources, total, now)
    needs = [allocation.Need(c.quantity, c.allow_partial) for c in commands]
    shares = allocation.distribute(candidates, needs)
    ids = [(uuid.uuid4(), uuid.uuid4() if c.reserving else None) for c in commands]  # receipt, hold
    handouts = [
        Handout(unit_id, office.office_id, hold_id, c.assignees[n] if c.assignees else None)
        for c, (units, _), (_, hold_id) in zip(commands, shares, ids, strict=True)
        for n, (unit_id, _) in enumerate(units)
    ]
    taken = await tx.allocations.hand_out(office.company_id, handouts, now)
    if len(taken) != len(handouts):
        raise errors.concurrent_change()
    explained: tuple[PassedOver, ...] | None = None
    outcomes: list[Allocated | DomainError] = []
    for command, need, (units, shortfall), record_ids in zip(
        commands, needs, shares, ids, strict=True
    ):
        passed: tuple[PassedOver, ...] = ()
        if allocation.needs_explanation(shortfall):
            if explained is None:
                bystanders = await tx.allocations.bystanders(office, code, now)
                explained = allocation.passed_over(bystanders, pool.enabled, poolable)
            passed = explained
        receipt = allocation.receipt(office, code, need, units, shortfall, passed, record_ids, now)
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
