"""The pool service's use cases: one method per use case, each one transaction.

Allocations (Acquire, Reserve) go through a writer per (company, currency) that
coalesces concurrent requests into one transaction: one lock, one commit for the batch.
Mutating use cases take a `Once` (request_id idempotency) and return the encoded
response, fresh or replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import asyncpg

from libs.common.clock import Clock
from libs.common.coalescing import Coalescer
from libs.common.database_outage import is_database_unreachable
from libs.common.errors import Aborted, DomainError, InvalidArgument
from libs.common.idempotency import IdempotencyStore, Once, reused, run_once
from libs.common.license_catalog import catalog
from services.pool.config import PoolSettings
from services.pool.domain import allocation, errors
from services.pool.domain.holds import hold_ttl
from services.pool.domain.model import (
    Assignee,
    Hold,
    HoldState,
    Office,
    PassedOver,
    PlanKind,
    Pool,
    Receipt,
    Source,
    Unit,
    UnitState,
)
from services.pool.repository import Handout, PoolRepository

log = logging.getLogger(__name__)

SCHEMA = "pool"
# Changes this large refresh the planner's statistics at once (see refresh_statistics).
BULK_CHANGE = 1000


@dataclass(frozen=True, slots=True)
class Allocate:
    """Acquire (hold_ttl None: units become ASSIGNED) or Reserve (units become HELD)."""

    company_id: uuid.UUID
    office_id: uuid.UUID
    license_type: str
    quantity: int
    sources: frozenset[Source]
    assignees: tuple[Assignee, ...] = ()
    hold_ttl: timedelta | None = None
    allow_partial: bool = False


@dataclass(frozen=True, slots=True)
class Allocated:
    units: tuple[Unit, ...]
    receipt: Receipt
    hold: Hold | None


@dataclass(frozen=True, slots=True)
class EnableResult:
    pool: Pool
    moved: tuple[Unit, ...]
    office_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class Committed:
    hold: Hold
    units: tuple[Unit, ...]


@dataclass(frozen=True, slots=True)
class OfficeLine:
    office_id: uuid.UUID
    currency: str
    license_type: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    office_lines: tuple[OfficeLine, ...]
    pool_lines: tuple[tuple[str, str, int, int], ...]  # currency, type, pooled, held
    live_units: int


@dataclass(frozen=True, slots=True)
class _Job:
    command: Allocate
    once: Once[Allocated]


class _HoldExpiredUnresolved(Exception):
    """Commit found its hold expired but not yet swept: expire it, then refuse."""


class PoolService:
    def __init__(self, db: asyncpg.Pool, clock: Clock, settings: PoolSettings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._repo = PoolRepository()
        self._idempotency = IdempotencyStore(SCHEMA)
        self._grace = timedelta(seconds=settings.grace_seconds)
        self._offices: dict[tuple[uuid.UUID, uuid.UUID], Office] = {}
        self._writer: Coalescer[tuple[uuid.UUID, str], _Job, bytes] = Coalescer(
            self._allocate_batch, max_batch=settings.max_batch, max_waiting=settings.max_waiting
        )

    # --- offices --------------------------------------------------------------------------

    async def put_office(self, office: Office, once: Once[Office]) -> bytes:
        async with self._db.acquire() as conn, conn.transaction():

            async def effect() -> Office:
                owner = await self._repo.office_owner(conn, office.office_id)
                if owner is not None and owner != office.company_id:
                    raise errors.office_not_found(office.office_id)
                await self._repo.lock(conn, office.company_id, office.currency, None)
                current = await self._repo.get_office(conn, office.company_id, office.office_id)
                if (
                    current is not None
                    and current.currency != office.currency
                    and await self._repo.office_has_live_units(conn, office.office_id)
                ):
                    raise errors.office_has_units(office.office_id)
                if office.plan_kind is PlanKind.LEGACY:
                    pool = await self._repo.get_pool(conn, office.company_id, office.currency)
                    if pool.enabled:
                        raise errors.legacy_plan_in_currency(office.currency, [office.office_id])
                stored = await self._repo.put_office(conn, office)
                if stored is None:
                    raise errors.office_not_found(office.office_id)
                return stored

            encoded = await run_once(conn, self._idempotency, once, effect)
        self._offices.pop((office.company_id, office.office_id), None)
        return encoded

    async def get_office(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Office:
        async with self._db.acquire() as conn:
            office = await self._repo.get_office(conn, company_id, office_id)
        if office is None:
            raise errors.office_not_found(office_id)
        return office

    async def list_offices(
        self, company_id: uuid.UUID, currency: str | None, after: uuid.UUID | None, limit: int
    ) -> list[Office]:
        async with self._db.acquire() as conn:
            return await self._repo.list_offices(conn, company_id, currency, after, limit)

    async def _office(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Office:
        """Office facts for routing; verified again inside each allocation transaction."""
        cached = self._offices.get((company_id, office_id))
        if cached is None:
            cached = await self.get_office(company_id, office_id)
            self._offices[(company_id, office_id)] = cached
        return cached

    # --- units ----------------------------------------------------------------------------

    async def add_units(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        once: Once[list[Unit]],
    ) -> bytes:
        office = await self.get_office(company_id, office_id)
        async with self._db.acquire() as conn:
            async with conn.transaction():
                now = await self._repo.lock(
                    conn, company_id, office.currency, self._clock.sql_now()
                )

                async def effect() -> list[Unit]:
                    return await self._repo.add_units(conn, office, license_type, quantity, now)

                encoded = await run_once(conn, self._idempotency, once, effect)
            if quantity >= BULK_CHANGE:
                await self._repo.refresh_statistics(conn)
            return encoded

    async def reassign_units(
        self,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, Assignee]],
        once: Once[list[Unit]],
    ) -> bytes:
        """ASSIGNED units change hands within their office: no allocation, no return."""
        unit_ids = [unit_id for unit_id, _ in reassignments]
        async with self._db.acquire() as conn, conn.transaction():

            async def effect() -> list[Unit]:
                units = await self._repo.units_by_id(conn, company_id, unit_ids)
                missing = set(unit_ids) - {u.unit_id for u in units}
                if missing:
                    raise errors.units_not_found(missing)
                for unit in units:
                    if unit.state is not UnitState.ASSIGNED:
                        raise errors.not_assigned(unit.unit_id, unit.state)
                now = self._clock.sql_now()
                for currency in sorted({u.currency for u in units}):
                    now = await self._repo.lock(conn, company_id, currency, self._clock.sql_now())
                assert now is not None
                if await self._repo.reassign(conn, company_id, reassignments, now) != len(units):
                    raise Aborted("CONCURRENT_CHANGE", "units changed meanwhile; retry")
                return await self._repo.units_by_id(conn, company_id, unit_ids)

            return await run_once(conn, self._idempotency, once, effect)

    async def return_units(
        self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], once: Once[list[Unit]]
    ) -> bytes:
        """Unassigned units go to the pool with the grace period, or to SPARE (SPEC §7)."""
        async with self._db.acquire() as conn, conn.transaction():

            async def effect() -> list[Unit]:
                units = await self._repo.units_by_id(conn, company_id, unit_ids)
                missing = set(unit_ids) - {u.unit_id for u in units}
                if missing:
                    raise errors.units_not_found(missing)
                for unit in units:
                    if unit.state not in (UnitState.ASSIGNED, UnitState.SPARE):
                        raise errors.not_returnable(unit.unit_id, unit.state)
                clock_now = self._clock.sql_now()
                now = clock_now
                for currency in sorted({u.currency for u in units}):
                    now = await self._repo.lock(conn, company_id, currency, clock_now)
                    pool = await self._repo.get_pool(conn, company_id, currency)
                    to_pool, to_spare = [], []
                    for unit in units:
                        if unit.currency != currency:
                            continue
                        poolable = catalog()[unit.license_type].poolable
                        destination = allocation.return_destination(pool.enabled, poolable)
                        if destination is UnitState.POOLED:
                            to_pool.append(unit.unit_id)
                        elif unit.state is UnitState.ASSIGNED:
                            to_spare.append(unit.unit_id)
                    assert now is not None
                    claimable_at = allocation.claimable_at_on_return(now, self._grace)
                    moved = await self._repo.return_to_pool(
                        conn, company_id, to_pool, now, claimable_at
                    ) + await self._repo.return_to_spare(conn, company_id, to_spare, now)
                    if moved != len(to_pool) + len(to_spare):
                        raise Aborted("CONCURRENT_CHANGE", "units changed meanwhile; retry")
                return await self._repo.units_by_id(conn, company_id, unit_ids)

            return await run_once(conn, self._idempotency, once, effect)

    async def mark_for_removal(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        once: Once[list[Unit]],
    ) -> bytes:
        """SPARE units of the office become REMOVAL_SCHEDULED (terminated at cycle close)."""
        office = await self.get_office(company_id, office_id)
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, company_id, office.currency, self._clock.sql_now())

            async def effect() -> list[Unit]:
                units = await self._repo.mark_for_removal(conn, office, license_type, quantity, now)
                if len(units) != quantity:
                    raise errors.not_enough_spare(office_id, license_type, quantity)
                return units

            return await run_once(conn, self._idempotency, once, effect)

    async def restore_from_removal(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        once: Once[list[Unit]],
    ) -> bytes:
        """Up to `quantity` units scheduled for removal become SPARE again."""
        office = await self.get_office(company_id, office_id)
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, company_id, office.currency, self._clock.sql_now())

            async def effect() -> list[Unit]:
                return await self._repo.restore_from_removal(
                    conn, office, license_type, quantity, now
                )

            return await run_once(conn, self._idempotency, once, effect)

    async def terminate_units(
        self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], once: Once[list[Unit]]
    ) -> bytes:
        """Units not in use become TERMINATED; any unit in use refuses the whole call."""
        async with self._db.acquire() as conn, conn.transaction():

            async def effect() -> list[Unit]:
                units = await self._repo.units_by_id(conn, company_id, unit_ids)
                missing = set(unit_ids) - {u.unit_id for u in units}
                if missing:
                    raise errors.units_not_found(missing)
                for unit in units:
                    if unit.state in (UnitState.ASSIGNED, UnitState.HELD):
                        raise errors.unit_in_use(unit.unit_id, unit.state)
                now = None
                for currency in sorted({u.currency for u in units}):
                    now = await self._repo.lock(conn, company_id, currency, self._clock.sql_now())
                assert now is not None
                live = [u.unit_id for u in units if u.state is not UnitState.TERMINATED]
                terminated = await self._repo.terminate(conn, company_id, live, now)
                if len(terminated) != len(live):
                    raise Aborted("CONCURRENT_CHANGE", "units changed meanwhile; retry")
                return await self._repo.units_by_id(conn, company_id, unit_ids)

            return await run_once(conn, self._idempotency, once, effect)

    async def get_unit(self, company_id: uuid.UUID, unit_id: uuid.UUID) -> Unit:
        async with self._db.acquire() as conn:
            units = await self._repo.units_by_id(conn, company_id, [unit_id])
        if not units:
            raise errors.units_not_found([unit_id])
        return units[0]

    async def list_units(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        license_type: str | None,
        state: UnitState | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Unit]:
        async with self._db.acquire() as conn:
            return await self._repo.list_units(
                conn, company_id, office_id, currency, license_type, state, after, limit
            )

    # --- pools ----------------------------------------------------------------------------

    async def enable_pool(
        self, company_id: uuid.UUID, currency: str, validate_only: bool, once: Once[EnableResult]
    ) -> bytes:
        """One-way and all-or-nothing (SPEC §7): every office of the currency takes part,
        refused while any of them is on a legacy plan."""
        poolable = [code for code, t in catalog().items() if t.poolable]
        async with self._db.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                now = await self._repo.lock(conn, company_id, currency, self._clock.sql_now())

                async def effect() -> EnableResult:
                    if (await self._repo.get_pool(conn, company_id, currency)).enabled:
                        raise errors.pool_already_enabled(currency)
                    legacy = await self._repo.legacy_offices(conn, company_id, currency)
                    if legacy:
                        raise errors.legacy_plan_in_currency(currency, legacy)
                    offices = tuple(
                        await self._repo.offices_of_currency(conn, company_id, currency)
                    )
                    if validate_only:
                        spare = await self._repo.pool_spare_units(
                            conn, company_id, currency, poolable
                        )
                        moved = [
                            replace(
                                u,
                                state=UnitState.POOLED,
                                returned_at=now,
                                claimable_at=allocation.claimable_at_on_enable(now),
                            )
                            for u in spare
                        ]
                        return EnableResult(Pool(company_id, currency, None), tuple(moved), offices)
                    pool = await self._repo.insert_pool(conn, company_id, currency, now)
                    moved = await self._repo.move_spare_into_pool(
                        conn, company_id, currency, poolable, allocation.claimable_at_on_enable(now)
                    )
                    return EnableResult(pool, tuple(moved), offices)

                if validate_only:
                    result = await effect()
                    await tx.rollback()
                    return once.encode(result)
                encoded = await run_once(conn, self._idempotency, once, effect)
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()
            await self._repo.refresh_statistics(conn)
            return encoded

    async def disable_pool(self, company_id: uuid.UUID, currency: str) -> None:
        async with self._db.acquire() as conn:
            pool = await self._repo.get_pool(conn, company_id, currency)
        if pool.enabled:
            raise errors.pool_irreversible(currency)
        raise errors.pool_not_enabled(currency)

    async def get_pool(
        self, company_id: uuid.UUID, currency: str
    ) -> tuple[Pool, list[tuple[str, int, int]]]:
        async with self._db.acquire() as conn, conn.transaction(readonly=True):
            now = await self._repo.now(conn, self._clock.sql_now())
            pool = await self._repo.get_pool(conn, company_id, currency)
            contents = await self._repo.pool_contents(conn, company_id, currency, now)
        return pool, contents

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_types: Sequence[str]
    ) -> tuple[datetime, dict[str, tuple[int, int, int, int]]]:
        """What the office could take now per type, judged at one instant."""
        office = await self.get_office(company_id, office_id)
        async with self._db.acquire() as conn, conn.transaction(readonly=True):
            now = await self._repo.now(conn, self._clock.sql_now())
            return now, await self._repo.availability(conn, office, license_types, now)

    # --- allocation -----------------------------------------------------------------------

    async def allocate(
        self, command: Allocate, once: Once[Allocated], time_remaining: float | None = None
    ) -> bytes:
        """Acquire or Reserve: runs in the next batch of the office's (company, currency)."""
        office = await self._office(command.company_id, command.office_id)
        return await self._writer.submit(
            (command.company_id, office.currency), _Job(command, once), time_remaining
        )

    async def _allocate_batch(
        self, key: tuple[uuid.UUID, str], jobs: Sequence[_Job]
    ) -> Sequence[bytes | BaseException]:
        try:
            return await self._allocate_together(key, jobs)
        except Exception as error:
            if len(jobs) == 1 or is_database_unreachable(error):  # one by one would fail too
                return [error] * len(jobs)
            log.warning("allocation batch failed; running its requests one by one", exc_info=True)
            results: list[bytes | BaseException] = []
            for job in jobs:
                results.extend(await self._allocate_batch(key, [job]))
            return results

    async def _allocate_together(
        self, key: tuple[uuid.UUID, str], jobs: Sequence[_Job]
    ) -> list[bytes | BaseException]:
        """One transaction for a batch of one (company, currency): claims the request ids,
        hands out units group by group (same office, type and sources), stores receipts,
        holds and responses."""
        company_id, currency = key
        results: list[bytes | BaseException | None] = [None] * len(jobs)
        leaders: dict[tuple[uuid.UUID, str], int] = {}
        for index, job in enumerate(jobs):
            leaders.setdefault(job.once.key.ident, index)
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, company_id, currency, self._clock.sql_now())
            pool, offices = await self._repo.pool_and_offices(
                conn, company_id, currency, list({job.command.office_id for job in jobs})
            )
            stored = await self._idempotency.lookup(
                conn, [jobs[i].once.key for i in leaders.values()]
            )
            groups: dict[tuple[Office, str, frozenset[Source]], list[int]] = {}
            for ident, index in leaders.items():
                command = jobs[index].command
                office = offices.get(command.office_id)
                if ident in stored:
                    results[index] = stored[ident]
                elif office is None or office.currency != currency:
                    self._offices.pop((company_id, command.office_id), None)
                    results[index] = Aborted("OFFICE_CHANGED", "the office changed; retry")
                else:
                    group = (office, command.license_type, command.sources)
                    groups.setdefault(group, []).append(index)
            done, receipts, holds = [], [], []
            for (office, code, requested), indexes in groups.items():
                commands = [jobs[i].command for i in indexes]
                outcomes = await self._hand_out(conn, office, code, requested, commands, pool, now)
                for index, outcome in zip(indexes, outcomes, strict=True):
                    job = jobs[index]
                    if isinstance(outcome, DomainError):
                        results[index] = outcome
                        continue
                    encoded = job.once.encode(outcome)
                    results[index] = encoded
                    done.append((job.once.key, encoded))
                    if outcome.receipt.receipt_id is not None:  # nothing taken: not stored
                        receipts.append(outcome.receipt)
                    if outcome.hold is not None:
                        holds.append(outcome.hold)
            await self._repo.insert_records(conn, company_id, currency, now, holds, receipts)
            await self._idempotency.record(conn, done)
        for index, job in enumerate(jobs):
            leader = leaders[job.once.key.ident]
            if leader != index:
                same = jobs[leader].once.key.fingerprint == job.once.key.fingerprint
                results[index] = results[leader] if same else reused(job.once.key)
        return [r if r is not None else Aborted("NOT_RUN", "not run") for r in results]

    async def _hand_out(
        self,
        conn: asyncpg.Connection,
        office: Office,
        code: str,
        requested: frozenset[Source],
        commands: Sequence[Allocate],
        pool: Pool,
        now: datetime,
    ) -> list[Allocated | DomainError]:
        """Allocations of one office and type, in arrival order: one candidate query,
        one statement that takes what is handed out."""
        poolable = catalog()[code].poolable
        sources = allocation.sources_to_try(requested, pool.enabled, poolable)
        total = sum(c.quantity for c in commands)
        candidates = await self._repo.candidates(conn, office, code, sources, total, now)
        needs = [allocation.Need(c.quantity, c.allow_partial) for c in commands]
        shares = allocation.distribute(candidates, needs)
        hold_ids = [
            uuid.uuid4() if c.hold_ttl is not None and units else None
            for c, (units, _) in zip(commands, shares, strict=True)
        ]
        handouts = [
            Handout(unit_id, office.office_id, hold_id, c.assignees[n] if c.assignees else None)
            for c, (units, _), hold_id in zip(commands, shares, hold_ids, strict=True)
            for n, (unit_id, _) in enumerate(units)
        ]
        taken = await self._repo.assign(conn, handouts, now)
        if len(taken) != len(handouts):
            raise Aborted("CONCURRENT_CHANGE", "units changed meanwhile; retry")
        explained: tuple[PassedOver, ...] | None = None
        outcomes: list[Allocated | DomainError] = []
        for command, (units, shortfall), hold_id in zip(commands, shares, hold_ids, strict=True):
            passed_over: tuple[PassedOver, ...] = ()
            if allocation.needs_explanation(shortfall):
                if explained is None:
                    bystanders = await self._repo.bystanders(conn, office, code, now, None)
                    explained = allocation.passed_over(bystanders, pool.enabled, poolable)
                passed_over = explained
            receipt = Receipt(
                receipt_id=uuid.uuid4() if units else None,
                company_id=office.company_id,
                office_id=office.office_id,
                currency=office.currency,
                license_type=code,
                requested=command.quantity,
                taken=allocation.by_source(units),
                shortfall=shortfall,
                passed_over=passed_over,
                hold_id=hold_id,
                created_at=now,
            )
            if shortfall and not command.allow_partial:
                outcomes.append(errors.NoLicenseAvailable(receipt))
                continue
            hold = None
            if hold_id is not None and command.hold_ttl is not None:
                assert receipt.receipt_id is not None
                hold = Hold(
                    hold_id=hold_id,
                    company_id=office.company_id,
                    office_id=office.office_id,
                    currency=office.currency,
                    license_type=code,
                    state=HoldState.PENDING,
                    unit_ids=tuple(sorted(unit_id for unit_id, _ in units)),
                    expires_at=now + command.hold_ttl,
                    receipt_id=receipt.receipt_id,
                    created_at=now,
                    resolved_at=None,
                )
            outcomes.append(Allocated(tuple(taken[u] for u, _ in units), receipt, hold))
        return outcomes

    # --- holds ----------------------------------------------------------------------------

    def hold_ttl(self, requested_seconds: int) -> timedelta:
        return hold_ttl(
            requested_seconds,
            timedelta(seconds=self._settings.hold_default_seconds),
            timedelta(seconds=self._settings.hold_max_seconds),
        )

    async def get_hold(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> Hold:
        async with self._db.acquire() as conn:
            hold = await self._repo.get_hold(conn, company_id, hold_id)
        if hold is None:
            raise errors.hold_not_found(hold_id)
        return hold

    async def commit(
        self,
        company_id: uuid.UUID,
        hold_id: uuid.UUID,
        assignees: Sequence[Assignee],
        once: Once[Committed],
    ) -> bytes:
        """Held units become ASSIGNED (one assignee each) or SPARE in the hold's office."""
        hold = await self.get_hold(company_id, hold_id)
        try:
            async with self._db.acquire() as conn, conn.transaction():
                now = await self._repo.lock(conn, company_id, hold.currency, self._clock.sql_now())

                async def effect() -> Committed:
                    committed = await self._repo.resolve_hold(
                        conn, company_id, hold_id, HoldState.COMMITTED, now
                    )
                    if assignees and len(assignees) != len(hold.unit_ids):
                        raise errors.assignee_count(len(hold.unit_ids), len(assignees))
                    if committed is None:
                        current = await self._repo.get_hold(conn, company_id, hold_id)
                        assert current is not None
                        if current.state is HoldState.PENDING:
                            raise _HoldExpiredUnresolved()
                        if current.state is HoldState.EXPIRED:
                            raise errors.hold_expired(hold_id)
                        raise errors.hold_not_pending(hold_id, current.state)
                    if assignees:
                        units = await self._repo.commit_assigned(conn, committed, assignees, now)
                    else:
                        await self._repo.commit_spare(conn, committed, now)
                        units = await self._repo.units_by_id(conn, company_id, committed.unit_ids)
                    return Committed(committed, tuple(units))

                return await run_once(conn, self._idempotency, once, effect)
        except _HoldExpiredUnresolved:
            await self._expire(company_id, hold.currency, [hold_id])
            raise errors.hold_expired(hold_id) from None

    async def release(self, company_id: uuid.UUID, hold_id: uuid.UUID, once: Once[Hold]) -> bytes:
        """Held units go back exactly as they were. Releasing a hold that already
        expired or was released is a no-op; a committed one cannot be released."""
        hold = await self.get_hold(company_id, hold_id)
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, company_id, hold.currency, self._clock.sql_now())

            async def effect() -> Hold:
                released = await self._repo.resolve_hold(
                    conn, company_id, hold_id, HoldState.RELEASED, now
                )
                if released is None:
                    await self._repo.expire_holds(conn, [hold_id], now)
                    current = await self._repo.get_hold(conn, company_id, hold_id)
                    assert current is not None
                    if current.state is HoldState.COMMITTED:
                        raise errors.hold_not_pending(hold_id, current.state)
                    return current
                await self._repo.restore_held(conn, [hold_id], now)
                return released

            return await run_once(conn, self._idempotency, once, effect)

    async def _expire(
        self, company_id: uuid.UUID, currency: str, hold_ids: Sequence[uuid.UUID]
    ) -> int:
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.lock(conn, company_id, currency, self._clock.sql_now())
            return len(await self._repo.expire_holds(conn, hold_ids, now))

    async def expire_due_holds(self, limit: int = 500) -> int:
        """Expires holds past their expiry; returns how many (the sweeper calls this)."""
        async with self._db.acquire() as conn:
            due = await self._repo.due_holds(conn, self._clock.sql_now(), limit)
        groups: dict[tuple[uuid.UUID, str], list[uuid.UUID]] = {}
        for hold_id, company_id, currency in due:
            groups.setdefault((company_id, currency), []).append(hold_id)
        expired = 0
        for (company_id, currency), ids in groups.items():
            expired += await self._expire(company_id, currency, ids)
        return expired

    async def run_sweeper(self) -> None:
        """Expires holds and purges old idempotency keys until cancelled."""
        purge_every = 3600.0
        since_purge = purge_every
        while True:
            try:
                while await self.expire_due_holds() > 0:
                    pass
                since_purge += self._settings.sweep_interval_seconds
                if since_purge >= purge_every:
                    since_purge = 0.0
                    async with self._db.acquire() as conn:
                        await self._idempotency.purge(
                            conn, self._settings.idempotency_retention_hours
                        )
            except (OSError, asyncpg.PostgresError) as error:
                if not is_database_unreachable(error):  # the database watch logs outages
                    log.warning("hold sweep failed; will retry", exc_info=True)
            await asyncio.sleep(self._settings.sweep_interval_seconds)

    # --- receipts and snapshots -----------------------------------------------------------

    async def get_receipt(self, company_id: uuid.UUID, receipt_id: uuid.UUID) -> Receipt:
        async with self._db.acquire() as conn:
            receipt = await self._repo.get_receipt(conn, company_id, receipt_id)
        if receipt is None:
            raise errors.receipt_not_found(receipt_id)
        return receipt

    async def snapshot(self, company_id: uuid.UUID, currency: str | None) -> Snapshot:
        """Counts by office, type and state as of one instant (one transaction), with
        held units counted where they were billed before the hold (SPEC §6)."""
        async with (
            self._db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            taken_at = await self._repo.now(conn, self._clock.sql_now())
            rows = await self._repo.snapshot(conn, company_id, currency)
        offices: dict[tuple[uuid.UUID, str, str], OfficeLine] = {}
        pools: dict[tuple[str, str], list[int]] = {}
        live = 0
        for row in rows:
            state, held_from, count = UnitState(row["state"]), row["held_from"], row["n"]
            live += count
            if state is UnitState.POOLED or held_from == UnitState.POOLED.value:
                line = pools.setdefault((row["currency"], row["license_type"]), [0, 0])
                line[1 if state is UnitState.HELD else 0] += count
                continue
            key = (row["office_id"], row["currency"], row["license_type"])
            office_line = offices.setdefault(key, OfficeLine(*key))
            office_line.counts[state.value] = office_line.counts.get(state.value, 0) + count
        return Snapshot(
            taken_at,
            tuple(offices.values()),
            tuple((c, t, p, h) for (c, t), (p, h) in sorted(pools.items())),
            live,
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._writer.close()


def check_assignees(quantity: int, assignees: Sequence[Assignee]) -> None:
    if assignees and len(assignees) != quantity:
        raise errors.assignee_count(quantity, len(assignees))
    if len({(a.kind, a.id) for a in assignees if a.id}) != len([a for a in assignees if a.id]):
        raise InvalidArgument(
            "DUPLICATE_ASSIGNEE",
            "assignees: each unit needs its own assignee",
            {"field": "assignees"},
        )
