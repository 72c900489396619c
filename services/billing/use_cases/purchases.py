"""Purchases: the driver of the purchase saga (`domain/purchase.py`), reading purchases,
and the recovery of interrupted ones.

The driver writes the purchase record before any pool call and moves it through the
saga's steps, persisting each step before the pool call it stands for. It carries what
it learns along the way (whether the pool takes part, what is available, the units
restored and committed, the hold) instead of asking the pool again; a driver resumed
after a crash learns again only what the record does not say.

Each purchase has one driver at a time, under a short lease its process renews while it
drives (`leases`). When a driver dies its lease ends seconds later: a caller retrying
the purchase (same request_id) waits for that within its deadline, then takes the
purchase over and carries it forward; the recovery (a pass at start-up, then every few
seconds) finds PENDING purchases whose lease ended and undoes them if they are before
the pivot, or completes them if after.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from libs.common.errors import DomainError, ErrorKind, Unavailable
from libs.common.reasons import Reason
from libs.common.unit_of_work import read_one
from services.billing.adapters.pool import Pool
from services.billing.domain import checkout, errors, events, proration
from services.billing.domain import purchase as saga
from services.billing.domain.model import (
    Availability,
    Held,
    HoldState,
    Purchase,
    PurchaseState,
    Quote,
    Split,
)
from services.billing.domain.purchase import Action, OnRefusal, Step, UndoAction
from services.billing.leases import Lease, LeaseKeeper, LeaseLost
from services.billing.unit_of_work import BillingUnitOfWork, Tx
from services.billing.use_cases.checkout import Checkout, checkout_for, priced_alike
from services.billing.use_cases.common import derived_request_id

log = logging.getLogger(__name__)

# A caller waiting for another driver of its purchase gives up this long before its
# deadline, to answer PURCHASE_IN_PROGRESS in time.
ANSWER_MARGIN_SECONDS = 0.5
# How often a waiting caller tries to take the purchase over.
TAKE_OVER_POLL_SECONDS = 0.1

# Called after each pool call of a purchase (tests crash the process there).
StepObserver = Callable[[Purchase, Action], None]


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
class PurchasePage:
    company_id: uuid.UUID
    office_id: uuid.UUID | None
    period: str | None
    before: tuple[datetime, uuid.UUID] | None
    limit: int


@dataclass
class Learned:
    """What one drive learned from the pool and the record, so it asks only once."""

    takes_part: bool | None = None
    # The record as last persisted (a step that fails part-way has persisted its start).
    record: Purchase | None = None
    availability: Availability | None = None
    restored: tuple[uuid.UUID, ...] | None = None
    from_pool: tuple[uuid.UUID, ...] | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A step found the purchase cannot go on (not a pool error): undo it for `error`."""

    error: DomainError


def _ids(unit_ids: tuple[str, ...]) -> tuple[uuid.UUID, ...]:
    return tuple(uuid.UUID(u) for u in unit_ids)


class PurchaseSaga:
    """Runs purchases, answers their retries, and recovers the interrupted ones."""

    def __init__(
        self,
        uow: BillingUnitOfWork,
        pool: Pool,
        leases: LeaseKeeper,
        hold_seconds: int,
        wait_seconds: float,
        observer: StepObserver | None = None,
    ) -> None:
        self._uow = uow
        self._pool = pool
        self._leases = leases
        self._hold_seconds = hold_seconds
        self._wait_seconds = wait_seconds
        self._observer = observer

    # --- a caller's purchase ----------------------------------------------------------------

    async def purchase(
        self, command: PurchaseCommand, time_remaining: float | None = None
    ) -> Purchase:
        """Runs a purchase, or answers a retry of one (same request_id); raises the reason
        a purchase failed. `time_remaining` (the caller's deadline) bounds how long a
        retry waits for another driver."""
        wait_until = self._wait_until(time_remaining)
        async with self._uow.reading() as tx:
            existing = await tx.purchases.by_request(command.company_id, command.request_id)
            quote = None
            if existing is None and command.quote_id is not None:
                quote = await self._quote_for(command, tx)
        if existing is not None:
            return await self._existing(command, *existing, wait_until)
        office_id = quote.office_id if quote else command.office_id
        license_type = quote.license_type if quote else command.license_type
        quantity = quote.quantity if quote else command.quantity
        assert office_id is not None
        assert license_type is not None
        assert quantity is not None
        found = await checkout_for(self._uow, command.company_id, office_id, license_type)
        if quote is not None:
            assert quote.quote_id is not None
            if found.plan.plan_id != quote.plan_id or found.unit_price != quote.unit_price:
                raise errors.quote_changed(quote.quote_id, "the plan's price changed")
            if found.cycle != quote.cycle:
                raise errors.quote_changed(quote.quote_id, "the billing cycle ended")
        found = await priced_alike(found, self._pool)
        learned = await self._first_look(found, quantity, quote)
        purchase = Purchase(
            purchase_id=uuid.uuid4(),
            company_id=command.company_id,
            request_id=command.request_id,
            office_id=office_id,
            license_type=license_type,
            quantity=quantity,
            state=PurchaseState.PENDING,
            plan_id=found.plan.plan_id,
            currency=found.plan.currency,
            unit_price=found.unit_price,
            cycle=found.cycle,
            purchased_at=found.now,
            attempt=1,
            step=Step.CREATED,
            quote_id=quote.quote_id if quote else None,
        )
        lease = self._leases.new()
        async with self._uow.reading() as tx:
            inserted = await tx.purchases.insert(
                purchase, command.fingerprint, lease.token, self._leases.seconds
            )
            if not inserted:
                existing = await tx.purchases.by_request(command.company_id, command.request_id)
        if not inserted:
            if existing is None:
                assert quote is not None
                assert quote.quote_id is not None
                raise errors.quote_used(quote.quote_id)
            return await self._existing(command, *existing, wait_until)
        return await self._drive(purchase, by_caller=True, lease=lease, learned=learned)

    async def _first_look(self, found: Checkout, quantity: int, quote: Quote | None) -> Learned:
        """What a new purchase learns before its record is written: whether the pool
        takes part and, if it does, what the office could take (and has scheduled)."""
        learned = Learned(takes_part=found.takes_part)
        if quote is None and found.takes_part:
            learned.availability = await self._pool.availability(
                found.plan.company_id, found.plan.office_id, found.license_type
            )
        return learned

    def _wait_until(self, time_remaining: float | None) -> float:
        """The loop time until which a caller may wait for another driver."""
        if time_remaining is None:
            budget = self._wait_seconds
        else:
            budget = time_remaining - ANSWER_MARGIN_SECONDS
        return asyncio.get_running_loop().time() + budget

    async def _quote_for(self, command: PurchaseCommand, tx: Tx) -> Quote:
        """The quote a purchase names, if it may still be bought."""
        assert command.quote_id is not None
        quote = await tx.quotes.get(command.company_id, command.quote_id)
        used = await tx.purchases.of_quote(command.company_id, command.quote_id)
        now = await tx.instants.now()
        if quote is None:
            raise errors.quote_not_found(command.quote_id)
        for field, given, quoted in (
            ("office_id", command.office_id, quote.office_id),
            ("license_type", command.license_type, quote.license_type),
            ("quantity", command.quantity, quote.quantity),
        ):
            if given is not None and given != quoted:
                raise errors.quote_mismatch(field, quoted)
        if used is not None:
            raise errors.quote_used(command.quote_id)
        if quote.expires_at is not None and now >= quote.expires_at:
            raise errors.quote_expired(command.quote_id)
        return quote

    async def _existing(
        self, command: PurchaseCommand, purchase: Purchase, fingerprint: bytes, wait_until: float
    ) -> Purchase:
        """A request_id seen before: its outcome, or the purchase resumed."""
        if fingerprint != command.fingerprint:
            raise Reason.REQUEST_ID_REUSED.error(
                "request_id was already used for a different request",
                {"request_id": command.request_id},
            )
        return await self._resume(purchase, by_caller=True, wait_until=wait_until)

    # --- resuming ---------------------------------------------------------------------------

    async def _resume(
        self, purchase: Purchase, by_caller: bool, wait_until: float | None = None
    ) -> Purchase:
        """The outcome of a purchase, driven on if it is PENDING; a caller restarts one
        that failed for a passing reason (a new attempt)."""
        if purchase.state is PurchaseState.COMPLETED:
            return purchase
        if purchase.state is PurchaseState.FAILED:
            kind = ErrorKind(purchase.failure_kind) if purchase.failure_kind else None
            if by_caller and saga.may_restart(kind):
                lease = self._leases.new()
                async with self._uow.reading() as tx:
                    restarted = await tx.purchases.restart_failed(
                        purchase.company_id, purchase.purchase_id, lease.token, self._leases.seconds
                    )
                    current = restarted or await tx.purchases.get(
                        purchase.company_id, purchase.purchase_id
                    )
                assert current is not None
                if restarted is not None:
                    return await self._drive(restarted, True, lease, Learned())
                return await self._drive_when_free(current, True, wait_until)
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
            async with self._uow.reading() as tx:
                leased = await tx.purchases.take_lease(
                    purchase.company_id, purchase.purchase_id, lease.token, self._leases.seconds
                )
                current = await tx.purchases.get(purchase.company_id, purchase.purchase_id)
            assert current is not None
            if leased:
                return await self._drive(current, by_caller, lease, Learned())
            if not by_caller:
                raise errors.driven_elsewhere()
            purchase = current
            if purchase.state is PurchaseState.PENDING:
                if loop.time() + TAKE_OVER_POLL_SECONDS > wait_until:
                    raise errors.purchase_in_progress(purchase.purchase_id)
                await asyncio.sleep(TAKE_OVER_POLL_SECONDS)
        return await self._resume(purchase, by_caller, wait_until)

    # --- the driver -------------------------------------------------------------------------

    async def _drive(
        self, purchase: Purchase, by_caller: bool, lease: Lease, learned: Learned
    ) -> Purchase:
        """Runs a PENDING purchase whose `lease` the caller took to COMPLETED or FAILED
        (raising why it failed), or leaves it PENDING where the pool's outcome is unknown
        (an outage at or after the pivot) for a retry or the recovery to finish."""
        settled = False
        try:
            async with self._leases.held((purchase.company_id, purchase.purchase_id), lease):
                purchase, failure = await self._run(purchase, by_caller, learned)
                settled = True
        except LeaseLost:
            raise errors.purchase_in_progress(purchase.purchase_id) from None
        finally:
            if not settled:
                async with self._uow.reading() as tx:
                    await tx.purchases.drop_lease(
                        purchase.company_id, purchase.purchase_id, lease.token
                    )
        if purchase.state is PurchaseState.FAILED:
            raise failure or _failure(purchase)
        return purchase

    async def _run(
        self, purchase: Purchase, by_caller: bool, learned: Learned
    ) -> tuple[Purchase, DomainError | None]:
        """Moves the purchase step by step until it is settled. A pool error at a step
        is what the saga says it leads to (`on_refusal`): an undo, or a stop (raised)."""
        quote = await self._quote_of(purchase)
        failure: DomainError | None = None
        while True:
            learned.record = purchase
            action = saga.next_action(purchase.step, by_caller)
            if action is Action.NOTHING:
                return purchase, failure
            try:
                if action is Action.UNDO:
                    purchase, failure = await self._undo(purchase, quote, learned, failure)
                    continue
                outcome = await self._forward(action, purchase, quote, learned)
            except DomainError as error:
                assert learned.record is not None
                purchase = learned.record
                decision = saga.on_refusal(purchase.step, error.kind)
                if decision is OnRefusal.STOP:
                    raise
                cause = errors.pool_down() if decision is OnRefusal.UNDO_POOL_DOWN else error
                if purchase.step is Step.COMMITTING and quote is not None:
                    # The quote's hold expired or was released.
                    assert quote.quote_id is not None
                    cause = errors.quote_expired(quote.quote_id)
                outcome = Refused(cause)
            if isinstance(outcome, Refused):
                assert learned.record is not None
                purchase = await self._begin_undo(learned.record, outcome.error)
                failure = outcome.error
            else:
                purchase = outcome

    async def _forward(
        self, action: Action, purchase: Purchase, quote: Quote | None, learned: Learned
    ) -> Purchase | Refused:
        if action is Action.RESTORE:
            return await self._restoring(purchase, quote, learned)
        if action is Action.RESERVE:
            return await self._reserving(purchase, quote, learned)
        if action is Action.CHECK_HOLD:
            assert purchase.hold_id is not None
            state = await self._pool.hold_state(purchase.company_id, purchase.hold_id)
            if state is not HoldState.COMMITTED:
                return Refused(errors.purchase_interrupted())
            return await self._committing(purchase, quote, learned)
        if action is Action.COMMIT:
            return await self._committing(purchase, quote, learned)
        assert action is Action.ADD
        return await self._adding(purchase, quote, learned)

    def _rid(self, purchase: Purchase, call: str) -> str:
        return derived_request_id("purchase", purchase.purchase_id, purchase.attempt, call)

    def _observe(self, purchase: Purchase, action: Action) -> None:
        if self._observer is not None:
            self._observer(purchase, action)

    async def _move(self, purchase: Purchase, to: Step, learned: Learned) -> Purchase:
        """Persists a step that has nothing else to record."""
        saga.check(purchase.step, to)
        async with self._uow.reading() as tx:
            await tx.purchases.set_step(purchase.company_id, purchase.purchase_id, to)
        learned.record = replace(purchase, step=to)
        return learned.record

    def _restore_quantity(self, purchase: Purchase, quote: Quote | None) -> int:
        return quote.split.restored if quote else purchase.quantity

    async def _restore(self, purchase: Purchase, quote: Quote | None) -> tuple[uuid.UUID, ...]:
        """RestoreFromRemoval (replayable: the same call returns the same units)."""
        quantity = self._restore_quantity(purchase, quote)
        if quantity == 0:
            return ()
        restored = await self._pool.restore_from_removal(
            self._rid(purchase, "restore"),
            purchase.company_id,
            purchase.office_id,
            purchase.license_type,
            quantity,
        )
        return _ids(restored)

    async def _restored(
        self, purchase: Purchase, quote: Quote | None, learned: Learned
    ) -> tuple[uuid.UUID, ...]:
        """The units restored: as learned, as recorded, or (a record that does not say)
        by replaying the restore."""
        if learned.restored is None:
            count = purchase.restored
            if count is not None and len(purchase.unit_ids) >= count:
                learned.restored = purchase.unit_ids[:count]
            else:
                learned.restored = await self._restore(purchase, quote)
        return learned.restored

    async def _restoring(
        self, purchase: Purchase, quote: Quote | None, learned: Learned
    ) -> Purchase | Refused:
        """CREATED/RESTORING: restore the office's scheduled removals, then decide what
        to take from the pool."""
        nothing_scheduled = (
            quote is None
            and learned.availability is not None
            and learned.availability.removal_scheduled == 0
        )
        if nothing_scheduled or self._restore_quantity(purchase, quote) == 0:
            restored: tuple[uuid.UUID, ...] = ()
        else:
            if purchase.step is Step.CREATED:
                purchase = await self._move(purchase, Step.RESTORING, learned)
            restored = await self._restore(purchase, quote)
        learned.restored = restored
        self._observe(purchase, Action.RESTORE)
        if quote is not None:
            assert quote.quote_id is not None
            if len(restored) != quote.split.restored:
                return Refused(errors.quote_changed(quote.quote_id, "fewer removals to restore"))
            return await self._split(purchase, quote.split, quote.hold_id, restored, learned)
        need = purchase.quantity - len(restored)
        wanted = await self._wanted(purchase, need, learned)
        if wanted:
            saga.check(purchase.step, Step.RESERVING)
            async with self._uow.reading() as tx:
                await tx.purchases.set_reserving(
                    purchase.company_id, purchase.purchase_id, wanted, restored
                )
            return replace(
                purchase,
                step=Step.RESERVING,
                reserve_quantity=wanted,
                restored=len(restored),
                unit_ids=restored,
            )
        return await self._split(purchase, Split(len(restored), 0, need), None, restored, learned)

    async def _wanted(self, purchase: Purchase, need: int, learned: Learned) -> int:
        """How many units to ask the pool for: what the office could take from its
        returns in grace and the pool, up to what it needs."""
        if not need:
            return 0
        if learned.takes_part is None:
            async with self._uow.reading() as tx:
                plan = await tx.plans.get(purchase.company_id, purchase.plan_id)
            assert plan is not None
            pooled = await self._pool.pool_enabled(purchase.company_id, purchase.currency)
            learned.takes_part = checkout.pool_takes_part(pooled, plan.kind, purchase.license_type)
        if not learned.takes_part:
            return 0
        if learned.availability is None:
            learned.availability = await self._pool.availability(
                purchase.company_id, purchase.office_id, purchase.license_type
            )
        return min(need, learned.availability.from_pool_sources)

    async def _reserving(
        self, purchase: Purchase, quote: Quote | None, learned: Learned
    ) -> Purchase | Refused:
        """RESERVING: hold pool units for the office (a replay asks what the interrupted
        attempt asked for: its hold, if it got one, is what the pool replays)."""
        restored = await self._restored(purchase, quote, learned)
        assert purchase.reserve_quantity
        held = await self._reserve(purchase, purchase.reserve_quantity)
        self._observe(purchase, Action.RESERVE)
        from_pool = len(held.unit_ids) if held else 0
        split = Split(len(restored), from_pool, purchase.quantity - len(restored) - from_pool)
        return await self._split(purchase, split, held.hold_id if held else None, restored, learned)

    async def _split(
        self,
        purchase: Purchase,
        split: Split,
        hold_id: uuid.UUID | None,
        restored: tuple[uuid.UUID, ...],
        learned: Learned,
    ) -> Purchase:
        """Records where the units come from, and moves on to the commit, the new units,
        or (everything restored) completes."""
        step = saga.check(purchase.step, saga.after_split(hold_id is not None, split.new))
        purchase = replace(purchase, split=split, hold_id=hold_id, restored=split.restored)
        if step is Step.DONE:
            return await self._complete(purchase, None, restored)
        async with self._uow.reading() as tx:
            await tx.purchases.set_split(
                purchase.company_id, purchase.purchase_id, step, split, hold_id, restored
            )
        learned.record = replace(purchase, step=step, unit_ids=restored)
        return learned.record

    async def _committing(
        self, purchase: Purchase, quote: Quote | None, learned: Learned
    ) -> Purchase:
        """COMMITTING: the pivot. The hold's units become the office's."""
        assert purchase.hold_id is not None
        assert purchase.split is not None
        committed = _ids(
            await self._pool.commit(
                self._rid(purchase, "commit"), purchase.company_id, purchase.hold_id
            )
        )
        learned.from_pool = committed
        self._observe(purchase, Action.COMMIT)
        restored = await self._restored(purchase, quote, learned)
        step = saga.check(purchase.step, saga.after_commit(purchase.split.new))
        if step is Step.DONE:
            return await self._complete(purchase, quote, (*restored, *committed))
        async with self._uow.reading() as tx:
            await tx.purchases.set_committed(
                purchase.company_id, purchase.purchase_id, step, (*restored, *committed)
            )
        return replace(purchase, step=step, unit_ids=(*restored, *committed))

    async def _adding(self, purchase: Purchase, quote: Quote | None, learned: Learned) -> Purchase:
        """ADDING: after the pivot. The new units are created, the charge recorded."""
        split = purchase.split
        assert split is not None
        have = purchase.unit_ids
        if len(have) < split.restored + split.from_pool:
            # A record written before it kept its units: learn them by replaying.
            restored = await self._restored(purchase, quote, learned)
            committed: tuple[uuid.UUID, ...] = ()
            if purchase.hold_id is not None:
                committed = _ids(
                    await self._pool.commit(
                        self._rid(purchase, "commit"), purchase.company_id, purchase.hold_id
                    )
                )
            have = (*restored, *committed)
        new: tuple[uuid.UUID, ...] = ()
        if split.new:
            new = _ids(
                await self._pool.add_units(
                    self._rid(purchase, "add"),
                    purchase.company_id,
                    purchase.office_id,
                    purchase.license_type,
                    split.new,
                    origin=f"purchase {purchase.purchase_id}",
                )
            )
        self._observe(purchase, Action.ADD)
        return await self._complete(purchase, quote, (*have, *new))

    async def _complete(
        self, purchase: Purchase, quote: Quote | None, unit_ids: tuple[uuid.UUID, ...]
    ) -> Purchase:
        assert purchase.split is not None
        amount = (
            quote.amount
            if quote is not None
            else proration.prorate(
                purchase.unit_price, purchase.split.new, purchase.cycle, purchase.purchased_at
            )
        )
        async with self._uow.transaction() as tx:
            now = await tx.instants.now()
            done = await tx.purchases.complete(
                purchase.company_id, purchase.purchase_id, purchase.split, amount, unit_ids, now
            )
            if done is None:  # settled meanwhile by another driver: its outcome stands
                done = await tx.purchases.get(purchase.company_id, purchase.purchase_id)
            else:
                tx.events.publish(done.company_id, events.PURCHASE_COMPLETED, events.purchase(done))
        assert done is not None
        return done

    # --- undoing ----------------------------------------------------------------------------

    async def _begin_undo(self, purchase: Purchase, error: DomainError) -> Purchase:
        step = saga.check(purchase.step, saga.undo_of(purchase.step))
        async with self._uow.reading() as tx:
            await tx.purchases.begin_undo(purchase.company_id, purchase.purchase_id, step, error)
        return replace(
            purchase,
            step=step,
            failure_kind=error.kind.value,
            failure_reason=error.reason,
            failure_message=error.message,
        )

    async def _undo(
        self,
        purchase: Purchase,
        quote: Quote | None,
        learned: Learned,
        failure: DomainError | None,
    ) -> tuple[Purchase, DomainError | None]:
        """Puts back what the purchase did before the pivot, then marks it FAILED. Pool
        errors are raised (the purchase stays PENDING in its undo state, for a retry or
        the recovery); a hold found committed sends the purchase on past the pivot."""
        if not purchase.step.undoing:  # the recovery, at a step before the pivot
            failure = failure or errors.purchase_interrupted()
            purchase = await self._begin_undo(purchase, failure)
            learned.record = purchase
        reached = purchase.step.reached
        for undo in saga.undo_plan(reached):
            if undo is UndoAction.RELEASE_HOLD:
                if await self._release(purchase, quote, learned):
                    saga.check(purchase.step, Step.COMMITTING)
                    async with self._uow.reading() as tx:
                        await tx.purchases.past_pivot(purchase.company_id, purchase.purchase_id)
                    return replace(purchase, step=Step.COMMITTING), None
            elif undo is UndoAction.SCHEDULE_AGAIN:
                restored = await self._restored(purchase, quote, learned)
                if restored:
                    await self._schedule_again(purchase, len(restored))
        if failure is None:
            failure = _failure(purchase) if purchase.failure_reason else None
        error = failure or errors.purchase_interrupted()
        saga.check(purchase.step, Step.UNDONE)
        async with self._uow.transaction() as tx:
            now = await tx.instants.now()
            failed = await tx.purchases.fail(purchase.company_id, purchase.purchase_id, error, now)
            if failed is None:
                failed = await tx.purchases.get(purchase.company_id, purchase.purchase_id)
            else:
                tx.events.publish(
                    failed.company_id, events.PURCHASE_FAILED, events.purchase(failed)
                )
        assert failed is not None
        return failed, error

    async def _reserve(self, purchase: Purchase, quantity: int) -> Held | None:
        """The purchase's one reserve: a replay asks the pool what the first attempt asked
        (same request_id, same quantity), so the pool answers with that attempt's hold."""
        return await self._pool.reserve(
            self._rid(purchase, "reserve"),
            purchase.company_id,
            purchase.office_id,
            purchase.license_type,
            quantity,
            self._hold_seconds,
        )

    async def _release(self, purchase: Purchase, quote: Quote | None, learned: Learned) -> bool:
        """Releases the purchase's hold, if it has one; True if it was committed (the
        purchase is past the pivot after all)."""
        hold_id = purchase.hold_id or (quote.hold_id if quote else None)
        if (
            hold_id is None
            and purchase.step.reached is Step.RESERVING
            and purchase.reserve_quantity
        ):
            # The record does not say whether the reserve held anything: replay it.
            held = await self._reserve(purchase, purchase.reserve_quantity)
            hold_id = held.hold_id if held else None
        if hold_id is None:
            return False
        state = await self._pool.hold_state(purchase.company_id, hold_id)
        if state is HoldState.COMMITTED:
            return True
        if state is not HoldState.PENDING:
            return False
        try:
            await self._pool.release(self._rid(purchase, "release"), purchase.company_id, hold_id)
        except DomainError as error:
            if error.kind is not ErrorKind.FAILED_PRECONDITION:
                raise
            again = await self._pool.hold_state(purchase.company_id, hold_id)
            return again is HoldState.COMMITTED
        return False

    async def _schedule_again(self, purchase: Purchase, quantity: int) -> None:
        """Restored units go back to REMOVAL_SCHEDULED. If the office already used some of
        them (they were SPARE meanwhile), as many as are still spare."""
        try:
            await self._pool.mark_for_removal(
                self._rid(purchase, "mark-again"),
                purchase.company_id,
                purchase.office_id,
                purchase.license_type,
                quantity,
            )
            return
        except DomainError as error:
            if Reason.parse(error.reason) is not Reason.NOT_ENOUGH_SPARE:
                raise
        spare = (
            await self._pool.availability(
                purchase.company_id, purchase.office_id, purchase.license_type
            )
        ).own_spare
        left = min(quantity, spare)
        log.warning(
            "purchase %s: %d restored unit(s) were used meanwhile; %d scheduled again",
            purchase.purchase_id,
            quantity - left,
            left,
        )
        if left:
            await self._pool.mark_for_removal(
                self._rid(purchase, f"mark-again-{left}"),
                purchase.company_id,
                purchase.office_id,
                purchase.license_type,
                left,
            )

    async def _quote_of(self, purchase: Purchase) -> Quote | None:
        if purchase.quote_id is None:
            return None
        async with self._uow.reading() as tx:
            return await tx.quotes.get(purchase.company_id, purchase.quote_id)

    # --- the recovery -----------------------------------------------------------------------

    async def recover_interrupted(self, limit: int = 100) -> int:
        """Undoes (before the pivot) or completes (after it) purchases whose driver's
        lease ended; returns how many were settled."""
        async with self._uow.reading() as tx:
            due = await tx.purchases.interrupted(limit)
        settled = 0
        for company_id, request_id in due:
            async with self._uow.reading() as tx:
                found = await tx.purchases.by_request(company_id, request_id)
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


def _failure(purchase: Purchase) -> DomainError:
    return errors.purchase_failed(
        purchase.purchase_id,
        purchase.failure_kind,
        purchase.failure_reason,
        purchase.failure_message,
    )


async def get_purchase(
    company_id: uuid.UUID, purchase_id: uuid.UUID, uow: BillingUnitOfWork
) -> Purchase:
    return await read_one(
        uow,
        lambda tx: tx.purchases.get(company_id, purchase_id),
        errors.purchase_not_found,
        purchase_id,
    )


async def list_purchases(page: PurchasePage, uow: BillingUnitOfWork) -> list[Purchase]:
    async with uow.stale_reading() as tx:
        return await tx.purchases.page(
            page.company_id, page.office_id, page.period, page.before, page.limit
        )
