"""The billing service's use cases. Billing never touches units: it drives the pool
service through its contract (`PoolClient`).

Purchases are a saga with a durable row (`billing.purchases`) written before any pool
call. Its steps, each a pool call with a request_id derived from the purchase, attempt
and step (so a replay never has a second effect):

1. RESTORING   RestoreFromRemoval: the office's scheduled removals come back (free);
2. RESERVING   Reserve with allow_partial from the office's own returns in grace and the
               pool (a quote's hold is used instead when purchasing a quote);
3. COMMITTING  Commit the hold: the pool units become SPARE of the office. This is the
               pivot: before it everything can be undone, after it nothing can fail for
               good (only a pool outage, which a retry or the recovery outlasts);
4. ADDING      AddUnits for the new units (after the pivot, so new units never exist for a
               purchase that then fails), then one billing transaction records the charge
               and completes the purchase.

A step that fails for good before the pivot undoes what was done (the hold released,
restored units scheduled for removal again) and the purchase is FAILED: nothing charged,
no unit moved.

Each purchase has one driver at a time, under a short lease its process renews while it
drives (`leases`). When a driver dies (a crash) its lease ends seconds later: a caller
retrying the purchase (same request_id) waits for that within its deadline, then takes
the purchase over and carries it forward; the recovery task (a pass at start-up, then
every few seconds) finds PENDING purchases whose lease ended and undoes them if they are
before the pivot, or completes them if after.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg

from libs.common.clock import Clock
from libs.common.database_outage import is_database_unreachable
from libs.common.errors import (
    Aborted,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from libs.common.idempotency import IdempotencyStore, Once, reused, run_once
from libs.common.reasons import Reason
from licensing.pool.v1 import pool_pb2 as ppb
from services.billing.adapters.pool import PoolGateway
from services.billing.config import BillingSettings
from services.billing.domain import checkout, cycles, errors, invoicing, parity, proration
from services.billing.domain.model import (
    Invoice,
    OfficeCounts,
    Plan,
    PlanKind,
    PoolCounts,
    Purchase,
    PurchaseState,
    Quote,
    Snapshot,
    Split,
)
from services.billing.leases import Lease, LeaseKeeper, LeaseLost
from services.billing.repository import BillingRepository

log = logging.getLogger(__name__)

SCHEMA = "billing"
R = TypeVar("R")

_KINDS: dict[str, type[DomainError]] = {
    cls.kind.value: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Aborted,
        Unavailable,
        ResourceExhausted,
        DeadlineExceeded,
    )
}
_RETRIABLE_FAILURES = frozenset({"UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED"})
_POOL_SOURCES = [ppb.ALLOCATION_SOURCE_OWN_RETURN_IN_GRACE, ppb.ALLOCATION_SOURCE_POOL]
_PLAN_KIND_PB = {PlanKind.BUNDLE: ppb.PLAN_KIND_BUNDLE, PlanKind.LEGACY: ppb.PLAN_KIND_LEGACY}

# Purchase steps (see the module docstring).
CREATED, RESTORING, RESERVING, COMMITTING, ADDING = (
    "CREATED",
    "RESTORING",
    "RESERVING",
    "COMMITTING",
    "ADDING",
)
UNDOING = "UNDOING"
BEFORE_PIVOT = frozenset({CREATED, RESTORING, RESERVING})

# A caller waiting for another driver of its purchase gives up this long before its
# deadline, to answer PURCHASE_IN_PROGRESS in time.
ANSWER_MARGIN_SECONDS = 0.5
# How often a waiting caller tries to take the purchase over.
TAKE_OVER_POLL_SECONDS = 0.1


def derived_request_id(*parts: object) -> str:
    """A deterministic request_id for a pool call made on behalf of a billing request."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return f"billing-{digest[:48]}"


@dataclass(frozen=True, slots=True)
class NewPlan:
    company_id: uuid.UUID
    office_id: uuid.UUID
    kind: PlanKind
    currency: str
    prices: Mapping[str, int]
    contracted: bool
    start_at: datetime | None
    primary: bool


@dataclass(frozen=True, slots=True)
class PlanChanges:
    kind: PlanKind | None = None
    prices: Mapping[str, int] | None = None
    contracted: bool | None = None
    active: bool | None = None
    primary: bool | None = None


@dataclass(frozen=True, slots=True)
class PurchaseCommand:
    company_id: uuid.UUID
    request_id: str
    fingerprint: bytes
    office_id: uuid.UUID | None
    license_type: str | None
    quantity: int | None
    quote_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Removal:
    unit_ids: tuple[str, ...]
    removal_at: datetime


class _Undo(Exception):
    """A purchase step failed for good before the pivot: undo, then fail with `error`."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.message)
        self.error = error


class _PastPivot(Exception):
    """Undo found the hold committed: the purchase must be completed instead."""


class BillingService:
    def __init__(
        self, db: asyncpg.Pool, clock: Clock, settings: BillingSettings, pool: PoolGateway
    ) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._pool = pool
        self._repo = BillingRepository()
        self._idempotency = IdempotencyStore(SCHEMA)
        self._leases = LeaseKeeper(db, self._repo, settings.purchase_lease_seconds)

    async def _now(self) -> datetime:
        async with self._db.acquire() as conn:
            now = await self._repo.now(conn, self._clock.sql_now())
        return now

    # --- idempotency helpers ------------------------------------------------------------

    async def _stored(self, once: Once[R]) -> bytes | None:
        """The stored response of an already answered request (REQUEST_ID_REUSED for
        another payload); None if the request is new or still under way."""
        async with self._db.acquire() as conn:
            found = await self._repo.stored_response(conn, once.key.company_id, once.key.request_id)
        if found is None:
            return None
        fingerprint, response = found
        if fingerprint != once.key.fingerprint:
            raise reused(once.key)
        return response

    async def _remember(
        self, once: Once[R], effect: Callable[[asyncpg.Connection], Awaitable[R]]
    ) -> bytes:
        """Stores the response of a request whose effects (pool calls) are done, together
        with `effect` (local writes), in one transaction."""
        async with self._db.acquire() as conn, conn.transaction():

            async def run() -> R:
                return await effect(conn)

            return await run_once(conn, self._idempotency, once, run)

    # --- plans ----------------------------------------------------------------------------

    async def _put_office(self, plan: Plan, request_id: str) -> None:
        """Tells the pool the office facts allocation needs (SPEC §4, §7)."""
        await self._pool.put_office(
            ppb.PutOfficeRequest(
                request_id=derived_request_id("put-office", plan.company_id, request_id),
                office=ppb.Office(
                    company_id=str(plan.company_id),
                    office_id=str(plan.office_id),
                    currency=plan.currency,
                    plan_kind=_PLAN_KIND_PB[plan.kind],
                    primary=plan.primary,
                ),
            )
        )

    async def create_plan(self, new: NewPlan, once: Once[Plan]) -> bytes:
        stored = await self._stored(once)
        if stored is not None:
            return stored
        async with self._db.acquire() as conn:
            now = await self._repo.now(conn, self._clock.sql_now())
            if await self._repo.active_plan(conn, new.company_id, new.office_id) is not None:
                raise errors.office_has_active_plan(new.office_id)
        start = (new.start_at or now).replace(microsecond=0)
        plan = Plan(
            plan_id=uuid.uuid4(),
            company_id=new.company_id,
            office_id=new.office_id,
            kind=new.kind,
            currency=new.currency,
            prices=dict(new.prices),
            contracted=new.contracted,
            start_at=start,
            active=True,
            primary=new.primary,
            created_at=now,
            updated_at=now,
        )
        await self._put_office(plan, once.key.request_id)
        try:
            async with self._db.acquire() as conn, conn.transaction():

                async def effect() -> Plan:
                    if plan.primary:
                        await self._repo.clear_primary(conn, plan.company_id, plan.office_id, now)
                    return await self._repo.insert_plan(conn, plan)

                return await run_once(conn, self._idempotency, once, effect)
        except asyncpg.UniqueViolationError:
            raise errors.office_has_active_plan(new.office_id) from None

    async def update_plan(
        self, company_id: uuid.UUID, plan_id: uuid.UUID, changes: PlanChanges, once: Once[Plan]
    ) -> bytes:
        stored = await self._stored(once)
        if stored is not None:
            return stored
        async with self._db.acquire() as conn:
            now = await self._repo.now(conn, self._clock.sql_now())
            current = await self._repo.get_plan(conn, company_id, plan_id)
        if current is None:
            raise errors.plan_not_found(plan_id)
        plan = replace(
            current,
            kind=changes.kind if changes.kind is not None else current.kind,
            prices=dict(changes.prices) if changes.prices is not None else current.prices,
            contracted=changes.contracted if changes.contracted is not None else current.contracted,
            active=changes.active if changes.active is not None else current.active,
            primary=changes.primary if changes.primary is not None else current.primary,
            updated_at=now,
        )
        if plan.active:
            await self._put_office(plan, once.key.request_id)
        try:
            async with self._db.acquire() as conn, conn.transaction():

                async def effect() -> Plan:
                    if plan.primary and plan.active:
                        await self._repo.clear_primary(conn, company_id, plan.office_id, now)
                    return await self._repo.update_plan(conn, plan)

                return await run_once(conn, self._idempotency, once, effect)
        except asyncpg.UniqueViolationError:
            raise errors.office_has_active_plan(plan.office_id) from None

    async def get_plan(self, company_id: uuid.UUID, plan_id: uuid.UUID) -> Plan:
        async with self._db.acquire() as conn:
            plan = await self._repo.get_plan(conn, company_id, plan_id)
        if plan is None:
            raise errors.plan_not_found(plan_id)
        return plan

    async def list_plans(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        active_only: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Plan]:
        async with self._db.acquire() as conn:
            return await self._repo.list_plans(
                conn, company_id, office_id, currency, active_only, after, limit
            )

    async def _active_plan(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Plan:
        """The office's active plan; OFFICE_NOT_FOUND for an office of another company,
        NO_ACTIVE_PLAN for one without an active plan."""
        async with self._db.acquire() as conn:
            plan = await self._repo.active_plan(conn, company_id, office_id)
            owner = None if plan else await self._repo.office_owner(conn, office_id)
        if plan is None:
            if owner is not None and owner != company_id:
                raise errors.office_not_found(office_id)
            raise errors.no_active_plan(office_id)
        return plan

    # --- parity ---------------------------------------------------------------------------

    async def pricing_parity(
        self, company_id: uuid.UUID, currency: str
    ) -> tuple[list[parity.Mismatch], bool]:
        async with self._db.acquire() as conn:
            plans = await self._repo.plans_of_company(conn, company_id, currency)
        pool = await self._pool.get_pool(str(company_id), currency)
        return parity.mismatches(plans), pool.pool.enabled

    async def _check_parity(self, plan: Plan, license_type: str) -> bool:
        """Whether the plan's currency is pooled; PRICING_MISMATCH if it is and the active
        plans disagree on the type's price."""
        pool = await self._pool.get_pool(str(plan.company_id), plan.currency)
        if pool.pool.enabled:
            async with self._db.acquire() as conn:
                plans = await self._repo.plans_of_company(conn, plan.company_id, plan.currency)
            found = parity.mismatches(plans, [license_type])
            if found:
                raise errors.PricingMismatch(plan.company_id, plan.currency, tuple(found))
        return pool.pool.enabled

    # --- quotes ---------------------------------------------------------------------------

    async def _scheduled(self, plan: Plan, license_type: str) -> int:
        units = await self._pool.list_units(
            ppb.ListUnitsRequest(
                company_id=str(plan.company_id),
                office_id=str(plan.office_id),
                license_type=license_type,
                state=ppb.UNIT_STATE_REMOVAL_SCHEDULED,
            )
        )
        return len(units)

    async def _pool_available(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        currency: str,
        license_type: str,
        now: datetime,
    ) -> int:
        """Units a Reserve from the pool sources would find now, without holding them:
        claimable pooled units plus the office's own returns still in grace."""
        pool = await self._pool.get_pool(str(company_id), currency)
        claimable = sum(c.claimable for c in pool.contents if c.license_type == license_type)
        own = await self._pool.list_units(
            ppb.ListUnitsRequest(
                company_id=str(company_id),
                office_id=str(office_id),
                license_type=license_type,
                state=ppb.UNIT_STATE_POOLED,
            )
        )
        in_grace = sum(1 for u in own if u.claimable_at.ToDatetime(tzinfo=UTC) > now)
        return claimable + in_grace

    async def quote(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        once: Once[Quote] | None,
    ) -> Quote | bytes:
        """A checkout preview; with `once` (hold) the pool units are held under a quote id
        and the encoded response is returned."""
        if once is not None:
            stored = await self._stored(once)
            if stored is not None:
                return stored
        plan = await self._active_plan(company_id, office_id)
        price = plan.price_of(license_type)
        if price is None:
            raise errors.type_not_priced(plan.plan_id, license_type)
        now = await self._now()
        cycle = cycles.cycle_at(plan.start_at, now)
        pooled = await self._check_parity(plan, license_type)
        scheduled = await self._scheduled(plan, license_type)
        need = quantity - min(quantity, scheduled)
        takes_part = checkout.pool_takes_part(pooled, plan.kind, license_type)
        hold_id: uuid.UUID | None = None
        expires_at: datetime | None = None
        available = 0
        if takes_part and need:
            available = await self._pool_available(
                company_id, office_id, plan.currency, license_type, now
            )
        if once is not None:
            expires_at = now + timedelta(seconds=self._settings.quote_hold_seconds)
            wanted = min(need, available)
            available = 0
            if wanted:
                # Only when something is there: the pool answers a Reserve that finds
                # nothing with INTERNAL (see the report), not with an empty hold.
                reserved = await self._pool.reserve(
                    ppb.ReserveRequest(
                        request_id=derived_request_id(
                            "quote", company_id, once.key.request_id, wanted
                        ),
                        company_id=str(company_id),
                        office_id=str(office_id),
                        license_type=license_type,
                        quantity=wanted,
                        ttl_seconds=self._settings.quote_hold_seconds,
                        allow_partial=True,
                        sources=_POOL_SOURCES,
                    )
                )
                if reserved.HasField("hold"):
                    hold_id = uuid.UUID(reserved.hold.hold_id)
                    available = len(reserved.hold.unit_ids)
                    expires_at = reserved.hold.expire_time.ToDatetime(tzinfo=now.tzinfo)
        found = checkout.split(quantity, scheduled, available)
        quote = Quote(
            quote_id=uuid.uuid4() if once is not None else None,
            company_id=company_id,
            office_id=office_id,
            license_type=license_type,
            quantity=quantity,
            split=found,
            plan_id=plan.plan_id,
            currency=plan.currency,
            unit_price=price,
            amount=proration.prorate(price, found.new, cycle, now),
            cycle=cycle,
            quoted_at=now,
            hold_id=hold_id,
            expires_at=expires_at,
        )
        if once is None:
            return quote

        async def effect(conn: asyncpg.Connection) -> Quote:
            await self._repo.insert_quote(conn, quote)
            return quote

        return await self._remember(once, effect)

    # --- purchases ------------------------------------------------------------------------

    async def purchase(
        self, command: PurchaseCommand, time_remaining: float | None = None
    ) -> Purchase:
        """Runs a purchase, or answers a retry of one (same request_id). `time_remaining`
        (the caller's deadline) bounds how long a retry waits for another driver."""
        wait_until = self._wait_until(time_remaining)
        async with self._db.acquire() as conn:
            existing = await self._repo.purchase_by_request(
                conn, command.company_id, command.request_id
            )
        if existing is not None:
            return await self._existing(command, *existing, wait_until)
        quote = await self._quote_for(command)
        office_id = quote.office_id if quote else command.office_id
        license_type = quote.license_type if quote else command.license_type
        quantity = quote.quantity if quote else command.quantity
        assert office_id is not None
        assert license_type is not None
        assert quantity is not None
        plan = await self._active_plan(command.company_id, office_id)
        price = plan.price_of(license_type)
        if price is None:
            raise errors.type_not_priced(plan.plan_id, license_type)
        now = await self._now()
        cycle = cycles.cycle_at(plan.start_at, now)
        if quote is not None:
            assert quote.quote_id is not None
            if plan.plan_id != quote.plan_id or price != quote.unit_price:
                raise errors.quote_changed(quote.quote_id, "the plan's price changed")
            if cycle != quote.cycle:
                raise errors.quote_changed(quote.quote_id, "the billing cycle ended")
        await self._check_parity(plan, license_type)
        purchase = Purchase(
            purchase_id=uuid.uuid4(),
            company_id=command.company_id,
            request_id=command.request_id,
            office_id=office_id,
            license_type=license_type,
            quantity=quantity,
            state=PurchaseState.PENDING,
            plan_id=plan.plan_id,
            currency=plan.currency,
            unit_price=price,
            cycle=cycle,
            purchased_at=now,
            attempt=1,
            step=CREATED,
            quote_id=quote.quote_id if quote else None,
        )
        lease = self._leases.new()
        async with self._db.acquire() as conn:
            inserted = await self._repo.insert_purchase(
                conn, purchase, command.fingerprint, lease.token, self._leases.seconds
            )
            if not inserted:
                existing = await self._repo.purchase_by_request(
                    conn, command.company_id, command.request_id
                )
        if not inserted:
            if existing is None:
                assert quote is not None
                assert quote.quote_id is not None
                raise errors.quote_used(quote.quote_id)
            return await self._existing(command, *existing, wait_until)
        return await self._drive(purchase, by_caller=True, lease=lease)

    def _wait_until(self, time_remaining: float | None) -> float:
        """The loop time until which a caller may wait for another driver."""
        if time_remaining is None:
            budget = self._settings.purchase_wait_seconds
        else:
            budget = time_remaining - ANSWER_MARGIN_SECONDS
        return asyncio.get_running_loop().time() + budget

    async def _quote_for(self, command: PurchaseCommand) -> Quote | None:
        if command.quote_id is None:
            return None
        async with self._db.acquire() as conn:
            quote = await self._repo.get_quote(conn, command.company_id, command.quote_id)
            used = await self._repo.purchase_of_quote(conn, command.quote_id)
            now = await self._repo.now(conn, self._clock.sql_now())
        if quote is None:
            raise errors.quote_not_found(command.quote_id)
        for field, given, quoted in (
            ("office_id", command.office_id, quote.office_id),
            ("license_type", command.license_type, quote.license_type),
            ("quantity", command.quantity, quote.quantity),
        ):
            if given is not None and given != quoted:
                raise InvalidArgument(
                    "QUOTE_MISMATCH",
                    f"{field}: differs from the quote's ({quoted})",
                    {"field": field},
                )
        if used is not None:
            raise errors.quote_used(command.quote_id)
        if quote.expires_at is not None and now >= quote.expires_at:
            raise errors.quote_expired(command.quote_id)
        return quote

    async def _existing(
        self, command: PurchaseCommand, purchase: Purchase, fp: bytes, wait_until: float
    ) -> Purchase:
        """A request_id seen before: its outcome, or the purchase resumed."""
        if fp != command.fingerprint:
            raise InvalidArgument(
                "REQUEST_ID_REUSED",
                "request_id was already used for a different request",
                {"request_id": command.request_id},
            )
        return await self._resume(purchase, by_caller=True, wait_until=wait_until)

    async def _resume(
        self, purchase: Purchase, by_caller: bool, wait_until: float | None = None
    ) -> Purchase:
        """The outcome of a purchase, driven on if it is PENDING; a caller restarts one
        that failed for a passing reason (a new attempt)."""
        if purchase.state is PurchaseState.COMPLETED:
            return purchase
        if purchase.state is PurchaseState.FAILED:
            if by_caller and purchase.failure_kind in _RETRIABLE_FAILURES:
                lease = self._leases.new()
                async with self._db.acquire() as conn:
                    restarted = await self._repo.restart_failed(
                        conn, purchase.purchase_id, lease.token, self._leases.seconds
                    )
                    current = await self._repo.get_purchase(
                        conn, purchase.company_id, purchase.purchase_id
                    )
                assert current is not None
                if restarted:
                    return await self._drive(current, by_caller=True, lease=lease)
                return await self._settled(current, wait_until)
            raise _failure(purchase)
        return await self._drive_when_free(purchase, by_caller, wait_until)

    async def _drive_when_free(
        self, purchase: Purchase, by_caller: bool, wait_until: float | None = None
    ) -> Purchase:
        """Drives a PENDING purchase once no other driver holds it. A caller waits, until
        `wait_until` (loop time), for another driver of the same purchase to finish or
        for its lease to end (a crashed driver's ends within a lease period), and then
        takes the purchase over; the outcome the other driver reached is the caller's."""
        loop = asyncio.get_running_loop()
        if wait_until is None:
            wait_until = self._wait_until(None)
        while purchase.state is PurchaseState.PENDING:
            lease = self._leases.new()
            async with self._db.acquire() as conn:
                leased = await self._repo.take_lease(
                    conn, purchase.purchase_id, lease.token, self._leases.seconds
                )
                current = await self._repo.get_purchase(
                    conn, purchase.company_id, purchase.purchase_id
                )
            assert current is not None
            if leased:
                return await self._drive(current, by_caller, lease=lease)
            if not by_caller:
                raise Aborted("PURCHASE_IN_PROGRESS", "another driver holds the purchase")
            purchase = current
            if purchase.state is PurchaseState.PENDING:
                if loop.time() + TAKE_OVER_POLL_SECONDS > wait_until:
                    raise _in_progress(purchase)
                await asyncio.sleep(TAKE_OVER_POLL_SECONDS)
        return await self._resume(purchase, by_caller, wait_until)

    async def _settled(self, purchase: Purchase, wait_until: float | None = None) -> Purchase:
        return await self._drive_when_free(purchase, by_caller=True, wait_until=wait_until)

    def _rid(self, purchase: Purchase, step: str) -> str:
        return derived_request_id("purchase", purchase.purchase_id, purchase.attempt, step)

    def _crash_point(self, step: str) -> None:
        if self._settings.crash_after_step == step:
            log.error("crashing after %s, as configured (BILLING_CRASH_AFTER_STEP)", step)
            os._exit(70)

    async def _set_step(self, purchase: Purchase, step: str) -> Purchase:
        async with self._db.acquire() as conn:
            await self._repo.set_step(conn, purchase.purchase_id, step)
        return replace(purchase, step=step)

    async def _quote_of(self, purchase: Purchase) -> Quote | None:
        if purchase.quote_id is None:
            return None
        async with self._db.acquire() as conn:
            return await self._repo.get_quote(conn, purchase.company_id, purchase.quote_id)

    async def _drive(self, purchase: Purchase, by_caller: bool, lease: Lease) -> Purchase:
        """Runs a PENDING purchase whose `lease` the caller took to COMPLETED or FAILED (or
        leaves it PENDING on a pool outage, for a retry or the recovery to finish)."""
        try:
            async with self._leases.held(purchase.purchase_id, lease):
                return await self._drive_leased(purchase, by_caller)
        except LeaseLost:
            raise _in_progress(purchase) from None
        finally:
            async with self._db.acquire() as conn:
                await self._repo.drop_lease(conn, purchase.purchase_id, lease.token)

    async def _drive_leased(self, purchase: Purchase, by_caller: bool) -> Purchase:
        try:
            step = purchase.step
            if step.startswith(UNDOING):
                return await self._undo_and_fail(purchase, None)
            if not by_caller and step in BEFORE_PIVOT:
                return await self._undo_and_fail(purchase, _interrupted())
            if not by_caller and step == COMMITTING:
                assert purchase.hold_id is not None
                hold = await self._pool.get_hold(str(purchase.company_id), str(purchase.hold_id))
                if hold.hold.state != ppb.HOLD_STATE_COMMITTED:
                    return await self._undo_and_fail(purchase, _interrupted())
            try:
                return await self._forward(purchase)
            except _Undo as undo:
                current = await self._reload(purchase)
                return await self._undo_and_fail(current, undo.error)
        except _PastPivot:
            return await self._forward(await self._reload(purchase))

    async def _reload(self, purchase: Purchase) -> Purchase:
        async with self._db.acquire() as conn:
            found = await self._repo.get_purchase(conn, purchase.company_id, purchase.purchase_id)
        assert found is not None
        return found

    async def _restore(self, purchase: Purchase, quote: Quote | None) -> list[str]:
        """Step 1 (replayable): the office's scheduled removals come back as SPARE."""
        quantity = quote.split.restored if quote else purchase.quantity
        if quantity == 0:
            return []
        response = await self._pool.restore_from_removal(
            ppb.RestoreFromRemovalRequest(
                request_id=self._rid(purchase, "restore"),
                company_id=str(purchase.company_id),
                office_id=str(purchase.office_id),
                license_type=purchase.license_type,
                quantity=quantity,
            )
        )
        return [u.unit_id for u in response.units]

    async def _reserve(self, purchase: Purchase, need: int) -> ppb.ReserveResponse:
        """Step 2 (replayable): pool units held for the office."""
        return await self._pool.reserve(
            ppb.ReserveRequest(
                request_id=self._rid(purchase, "reserve"),
                company_id=str(purchase.company_id),
                office_id=str(purchase.office_id),
                license_type=purchase.license_type,
                quantity=need,
                ttl_seconds=self._settings.purchase_hold_seconds,
                allow_partial=True,
                sources=_POOL_SOURCES,
            )
        )

    async def _commit(self, purchase: Purchase, hold_id: uuid.UUID) -> list[str]:
        response = await self._pool.commit(
            ppb.CommitRequest(
                request_id=self._rid(purchase, "commit"),
                company_id=str(purchase.company_id),
                hold_id=str(hold_id),
            )
        )
        return [u.unit_id for u in response.units]

    async def _forward(self, purchase: Purchase) -> Purchase:
        quote = await self._quote_of(purchase)
        try:
            if purchase.step in BEFORE_PIVOT:
                purchase = await self._set_step(purchase, RESTORING)
                restored = await self._restore(purchase, quote)
                self._crash_point("restore")
                if quote is not None:
                    assert quote.quote_id is not None
                    if len(restored) != quote.split.restored:
                        raise _Undo(
                            errors.quote_changed(quote.quote_id, "fewer removals to restore")
                        )
                    hold_id, from_pool = quote.hold_id, quote.split.from_pool
                else:
                    hold_id, from_pool = None, 0
                    need = purchase.quantity - len(restored)
                    pooled = await self._pooled(purchase)
                    # A replay asks for what the interrupted attempt asked for: its hold
                    # (if it got one) is what the pool replays, and holds no one else's.
                    wanted = purchase.reserve_quantity or 0
                    if (
                        not wanted
                        and need
                        and checkout.pool_takes_part(
                            pooled, await self._plan_kind(purchase), purchase.license_type
                        )
                    ):
                        available = await self._pool_available(
                            purchase.company_id,
                            purchase.office_id,
                            purchase.currency,
                            purchase.license_type,
                            await self._now(),
                        )
                        wanted = min(need, available)
                    if wanted:
                        async with self._db.acquire() as conn:
                            await self._repo.set_reserving(conn, purchase.purchase_id, wanted)
                        purchase = replace(purchase, step=RESERVING, reserve_quantity=wanted)
                        reserved = await self._reserve(purchase, wanted)
                        self._crash_point("reserve")
                        if reserved.HasField("hold"):
                            hold_id = uuid.UUID(reserved.hold.hold_id)
                            from_pool = len(reserved.hold.unit_ids)
                found = Split(
                    len(restored), from_pool, purchase.quantity - len(restored) - from_pool
                )
                step = COMMITTING if hold_id else ADDING
                async with self._db.acquire() as conn:
                    await self._repo.set_split(conn, purchase.purchase_id, step, found, hold_id)
                purchase = replace(purchase, step=step, split=found, hold_id=hold_id)
            if purchase.step == COMMITTING:
                assert purchase.hold_id is not None
                try:
                    await self._commit(purchase, purchase.hold_id)
                except FailedPrecondition as error:
                    # The hold expired or was released: its units are back where they were.
                    if quote is not None and quote.quote_id is not None:
                        raise _Undo(errors.quote_expired(quote.quote_id)) from None
                    raise _Undo(error) from None
                self._crash_point("commit")
                purchase = await self._set_step(purchase, ADDING)
        except Unavailable:
            if purchase.step in BEFORE_PIVOT:
                raise _Undo(_pool_down()) from None
            raise  # COMMITTING: the outcome is unknown; a retry or the recovery decides
        except (InvalidArgument, NotFound, FailedPrecondition) as error:
            if purchase.step in BEFORE_PIVOT:
                raise _Undo(error) from None
            raise
        return await self._finish(purchase, quote)

    async def _finish(self, purchase: Purchase, quote: Quote | None) -> Purchase:
        """After the pivot: create the new units, record the charge. Only a pool outage
        can stop it, and a retry or the recovery carries on."""
        assert purchase.split is not None
        restored = await self._restore(purchase, quote) if purchase.split.restored else []
        from_pool = (
            await self._commit(purchase, purchase.hold_id) if purchase.hold_id is not None else []
        )
        new: list[str] = []
        if purchase.split.new:
            response = await self._pool.add_units(
                ppb.AddUnitsRequest(
                    request_id=self._rid(purchase, "add"),
                    company_id=str(purchase.company_id),
                    office_id=str(purchase.office_id),
                    license_type=purchase.license_type,
                    quantity=purchase.split.new,
                )
            )
            new = [u.unit_id for u in response.units]
        self._crash_point("add")
        amount = (
            quote.amount
            if quote is not None
            else proration.prorate(
                purchase.unit_price, purchase.split.new, purchase.cycle, purchase.purchased_at
            )
        )
        unit_ids = [uuid.UUID(u) for u in (*restored, *from_pool, *new)]
        async with self._db.acquire() as conn:
            now = await self._repo.now(conn, self._clock.sql_now())
            done = await self._repo.complete(conn, purchase.purchase_id, amount, unit_ids, now)
        if done is None:
            return await self._settled(await self._reload(purchase))
        return done

    async def _pooled(self, purchase: Purchase) -> bool:
        pool = await self._pool.get_pool(str(purchase.company_id), purchase.currency)
        return pool.pool.enabled

    async def _plan_kind(self, purchase: Purchase) -> PlanKind:
        async with self._db.acquire() as conn:
            plan = await self._repo.get_plan(conn, purchase.company_id, purchase.plan_id)
        assert plan is not None
        return plan.kind

    async def _undo_and_fail(self, purchase: Purchase, error: DomainError | None) -> Purchase:
        """Undoes a purchase that did not reach the pivot, then marks it FAILED. Raises
        `error` (the reason it failed) once done; Unavailable if the pool is down (the
        purchase stays PENDING and UNDOING, for a retry or the recovery)."""
        step = purchase.step
        if step.startswith(UNDOING):
            step = step.split(":", 1)[1]
        else:
            error = error or _interrupted()
            async with self._db.acquire() as conn:
                await self._repo.begin_undo(
                    conn,
                    purchase.purchase_id,
                    f"{UNDOING}:{step}",
                    error.kind.value,
                    error.reason,
                    error.message,
                )
        quote = await self._quote_of(purchase)
        try:
            restored = 0
            if step != CREATED:
                restored = len(await self._restore(purchase, quote))
            hold_id = purchase.hold_id or (quote.hold_id if quote else None)
            if hold_id is None and step == RESERVING and purchase.reserve_quantity:
                reserved = await self._reserve(purchase, purchase.reserve_quantity)
                if reserved.HasField("hold"):
                    hold_id = uuid.UUID(reserved.hold.hold_id)
            if hold_id is not None:
                await self._release(purchase, hold_id)
            if restored:
                await self._mark_again(purchase, restored)
        except Unavailable:
            log.warning("undoing purchase %s: pool down; will retry", purchase.purchase_id)
            raise
        if error is None:
            error = _failure(purchase) if purchase.failure_reason else _interrupted()
        async with self._db.acquire() as conn:
            now = await self._repo.now(conn, self._clock.sql_now())
            await self._repo.fail(
                conn, purchase.purchase_id, error.kind.value, error.reason, error.message, now
            )
        raise error

    async def _release(self, purchase: Purchase, hold_id: uuid.UUID) -> None:
        hold = await self._pool.get_hold(str(purchase.company_id), str(hold_id))
        if hold.hold.state == ppb.HOLD_STATE_COMMITTED:
            raise _PastPivot()
        if hold.hold.state == ppb.HOLD_STATE_PENDING:
            try:
                await self._pool.release(
                    ppb.ReleaseRequest(
                        request_id=self._rid(purchase, "release"),
                        company_id=str(purchase.company_id),
                        hold_id=str(hold_id),
                    )
                )
            except FailedPrecondition:
                again = await self._pool.get_hold(str(purchase.company_id), str(hold_id))
                if again.hold.state == ppb.HOLD_STATE_COMMITTED:
                    raise _PastPivot() from None

    async def _mark_again(self, purchase: Purchase, quantity: int) -> None:
        """Restored units go back to REMOVAL_SCHEDULED. If the office already used some of
        them (they were SPARE meanwhile), as many as are still spare."""
        request = ppb.MarkForRemovalRequest(
            request_id=self._rid(purchase, "mark-again"),
            company_id=str(purchase.company_id),
            office_id=str(purchase.office_id),
            license_type=purchase.license_type,
            quantity=quantity,
        )
        try:
            await self._pool.mark_for_removal(request)
        except FailedPrecondition as error:
            if Reason.parse(error.reason) is not Reason.NOT_ENOUGH_SPARE:
                raise
            spare = await self._pool.list_units(
                ppb.ListUnitsRequest(
                    company_id=str(purchase.company_id),
                    office_id=str(purchase.office_id),
                    license_type=purchase.license_type,
                    state=ppb.UNIT_STATE_SPARE,
                )
            )
            left = min(quantity, len(spare))
            log.warning(
                "purchase %s: %d restored unit(s) were used meanwhile; %d scheduled again",
                purchase.purchase_id,
                quantity - left,
                left,
            )
            if left:
                request.request_id = self._rid(purchase, f"mark-again-{left}")
                request.quantity = left
                await self._pool.mark_for_removal(request)

    async def get_purchase(self, company_id: uuid.UUID, purchase_id: uuid.UUID) -> Purchase:
        async with self._db.acquire() as conn:
            found = await self._repo.get_purchase(conn, company_id, purchase_id)
        if found is None:
            raise errors.purchase_not_found(purchase_id)
        return found

    async def list_purchases(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        period: str | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Purchase]:
        async with self._db.acquire() as conn:
            return await self._repo.list_purchases(
                conn, company_id, office_id, period, before, limit
            )

    async def recover_interrupted(self, limit: int = 100) -> int:
        """Undoes (before the pivot) or completes (after it) purchases whose driver's
        lease ended; returns how many were settled."""
        async with self._db.acquire() as conn:
            due = await self._repo.interrupted_purchases(conn, limit)
        settled = 0
        for company_id, request_id in due:
            async with self._db.acquire() as conn:
                found = await self._repo.purchase_by_request(conn, company_id, request_id)
            if found is None:
                continue
            try:
                await self._resume(found[0], by_caller=False)
                settled += 1
            except Unavailable:
                log.warning("recovering purchase %s: pool down", found[0].purchase_id)
            except DomainError as error:
                settled += 1
                log.info("recovered purchase %s: %s", found[0].purchase_id, error.reason)
        return settled

    async def run_recovery(self) -> None:
        """Recovers interrupted purchases (at once, then every recovery interval) and
        purges old idempotency keys until cancelled."""
        purge_every = 3600.0
        since_purge = purge_every
        while True:
            try:
                await self.recover_interrupted()
                if since_purge >= purge_every:
                    since_purge = 0.0
                    async with self._db.acquire() as conn:
                        await self._idempotency.purge(
                            conn, self._settings.idempotency_retention_hours
                        )
            except (OSError, asyncpg.PostgresError) as error:
                if not is_database_unreachable(error):  # the database watch logs outages
                    log.warning("purchase recovery failed; will retry", exc_info=True)
            except Exception:
                log.exception("purchase recovery failed; will retry")
            await asyncio.sleep(self._settings.recovery_interval_seconds)
            since_purge += self._settings.recovery_interval_seconds

    async def keep_leases(self) -> None:
        """Renews the leases of the purchases this process drives until cancelled."""
        await self._leases.run()

    # --- removals -------------------------------------------------------------------------

    async def schedule_removal(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        once: Once[Removal],
    ) -> bytes:
        stored = await self._stored(once)
        if stored is not None:
            return stored
        plan = await self._active_plan(company_id, office_id)
        if plan.contracted:
            raise errors.contracted_plan(plan.plan_id)
        now = await self._now()
        cycle = cycles.cycle_at(plan.start_at, now)
        marked = await self._pool.mark_for_removal(
            ppb.MarkForRemovalRequest(
                request_id=derived_request_id("removal", company_id, once.key.request_id),
                company_id=str(company_id),
                office_id=str(office_id),
                license_type=license_type,
                quantity=quantity,
            )
        )
        result = Removal(tuple(u.unit_id for u in marked.units), cycle.end)

        async def effect(conn: asyncpg.Connection) -> Removal:
            return result

        return await self._remember(once, effect)

    # --- cycle close and invoices ---------------------------------------------------------

    async def close_cycle(self, company_id: uuid.UUID, period: str, once: Once[Invoice]) -> bytes:
        stored = await self._stored(once)
        if stored is not None:
            return stored
        cycles.parse_period(period)
        async with self._db.acquire() as conn:
            now = await self._repo.now(conn, self._clock.sql_now())
            existing = await self._repo.invoice_of_period(conn, company_id, period)
            pending = await self._repo.pending_in_period(conn, company_id, period)
        if period > cycles.period_of(now):
            raise errors.period_not_started(period)
        if existing is None:
            if pending:
                raise Aborted(
                    "PURCHASES_IN_PROGRESS",
                    f"{pending} purchase(s) of {period} are under way; retry shortly",
                    {"period": period},
                )
            invoice = await self._make_invoice(company_id, period, now)
            async with self._db.acquire() as conn:
                await self._repo.insert_invoice(conn, invoice)
                existing = await self._repo.invoice_of_period(conn, company_id, period)
        assert existing is not None
        invoice, terminated = existing
        if not terminated:
            count = await self._terminate_scheduled(company_id, invoice.invoice_id)
            async with self._db.acquire() as conn:
                await self._repo.terminations_done(conn, invoice.invoice_id, count)
                found = await self._repo.invoice_of_period(conn, company_id, period)
            assert found is not None
            invoice = found[0]
        final = invoice

        async def effect(conn: asyncpg.Connection) -> Invoice:
            return final

        return await self._remember(once, effect)

    async def _make_invoice(self, company_id: uuid.UUID, period: str, now: datetime) -> Invoice:
        snapshot = _snapshot(await self._pool.snapshot(str(company_id)))
        async with self._db.acquire() as conn:
            plans = await self._repo.plans_of_company(conn, company_id)
            charges = await self._repo.charges_of_period(conn, company_id, period)
        billed = invoicing.lines(snapshot, plans)
        reconciliation = invoicing.reconcile(snapshot, billed)
        if not reconciliation.balanced:
            log.error("invoice of %s %s does not reconcile: %s", company_id, period, reconciliation)
        return Invoice(
            invoice_id=uuid.uuid4(),
            company_id=company_id,
            period=period,
            snapshot_at=snapshot.taken_at,
            lines=tuple(billed),
            charges=tuple(charges),
            reconciliation=reconciliation,
            created_at=now,
            totals=invoicing.totals(billed, charges),
        )

    async def _terminate_scheduled(self, company_id: uuid.UUID, invoice_id: uuid.UUID) -> int:
        """Units scheduled for removal end with the cycle (SPEC §9)."""
        units = await self._pool.list_units(
            ppb.ListUnitsRequest(company_id=str(company_id), state=ppb.UNIT_STATE_REMOVAL_SCHEDULED)
        )
        ids = sorted(u.unit_id for u in units)
        for start in range(0, len(ids), 1000):
            batch = ids[start : start + 1000]
            await self._pool.terminate_units(
                ppb.TerminateUnitsRequest(
                    request_id=derived_request_id("terminate", invoice_id, *batch),
                    company_id=str(company_id),
                    unit_ids=batch,
                )
            )
        return len(ids)

    async def get_invoice(self, company_id: uuid.UUID, invoice_id: uuid.UUID) -> Invoice:
        async with self._db.acquire() as conn:
            found = await self._repo.get_invoice(conn, company_id, invoice_id)
        if found is None:
            raise errors.invoice_not_found(invoice_id)
        return found

    async def list_invoices(
        self, company_id: uuid.UUID, before: str | None, limit: int
    ) -> list[Invoice]:
        async with self._db.acquire() as conn:
            return await self._repo.list_invoices(conn, company_id, before, limit)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._pool.close()


def _snapshot(response: ppb.GetSnapshotResponse) -> Snapshot:
    return Snapshot(
        taken_at=response.snapshot_time.ToDatetime(tzinfo=UTC),
        offices=tuple(
            OfficeCounts(
                office_id=uuid.UUID(line.office_id),
                currency=line.currency,
                license_type=line.license_type,
                assigned=line.assigned,
                spare=line.spare,
                held=line.held,
                removal_scheduled=line.removal_scheduled,
            )
            for line in response.office_lines
        ),
        pools=tuple(
            PoolCounts(line.currency, line.license_type, line.pooled, line.held)
            for line in response.pool_lines
        ),
        live_units=response.live_units,
    )


def _failure(purchase: Purchase) -> DomainError:
    kind = _KINDS.get(purchase.failure_kind or "", Aborted)
    return kind(
        purchase.failure_reason or "PURCHASE_FAILED",
        purchase.failure_message or "the purchase failed; nothing was charged",
        {"purchase_id": str(purchase.purchase_id)},
    )


def _in_progress(purchase: Purchase) -> Aborted:
    return Aborted(
        "PURCHASE_IN_PROGRESS",
        "this purchase is still under way; retry with the same request_id",
        {"purchase_id": str(purchase.purchase_id)},
    )


def _interrupted() -> Aborted:
    return Aborted(
        "PURCHASE_INTERRUPTED",
        "the purchase was interrupted and undone; nothing was charged. Retry it",
    )


def _pool_down() -> Unavailable:
    return Unavailable(
        "POOL_UNAVAILABLE",
        "the pool service is unavailable; nothing was charged. Retry with the same request_id",
    )
