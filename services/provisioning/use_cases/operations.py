"""Drives pool operations (see `domain/pool_operation.py` for the steps): Reserve, then
the local write, then Commit; a failure before the first commit undoes what was done, and
the recovery settles operations whose driver died.

One driver at a time: the driver holds a lease on the operation's row (renewed at each
step); a retry of the same request_id waits for it, the recovery takes operations whose
lease ran out. Should two drivers still meet (a lease that ran out under a slow driver),
they do no harm: every pool call carries a request_id derived from the operation and its
attempt (the pool replays it), every step is a compare-and-set on the row, and the pool
decides each hold once (a committed hold cannot be released, a released one not
committed), so both arrive at the same end. An undone operation's record is deleted with
its local undo: a refused request leaves nothing, and its retry is a new attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

from libs.common.database_outage import is_database_unreachable
from libs.common.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from libs.common.handlers import replayed
from libs.common.idempotency import IdempotencyKey, reused
from libs.common.reasons import Reason
from services.provisioning.adapters.billing import BillingGateway
from services.provisioning.adapters.pool import PoolGateway
from services.provisioning.domain.peers import AssigneeKind, HoldState
from services.provisioning.domain.pool_operation import (
    UNFINISHED,
    Answered,
    Held,
    Plan,
    PoolOperation,
    Recovery,
    Reservation,
    Step,
)
from services.provisioning.unit_of_work import ProvisioningUnitOfWork, Tx

log = logging.getLogger(__name__)

R = TypeVar("R")
# The local effect of an operation, in its transaction; the operation carries its holds.
LocalWrite: TypeAlias = Callable[[Tx, datetime, PoolOperation], Awaitable[R]]
# Removes the local effect of an operation that is undone after it was written.
LocalUndo: TypeAlias = Callable[[Tx, datetime, PoolOperation], Awaitable[None]]
# The response of an operation's kind, as stored and answered (wired in app.py).
Encoder: TypeAlias = Callable[[Any], bytes]
# Awaited after each step ("reserved", "written", "committed") with the operation's kind;
# what it raises is a failure at that point (tests inject failures and crashes with it).
StepObserver: TypeAlias = Callable[[str, str], Awaitable[None]]

HOLD_SECONDS = 300
_WAITS, _WAIT_SECONDS = 100, 0.1  # how long a retry waits for another driver
_GONE = (Reason.HOLD_EXPIRED.name, Reason.HOLD_NOT_PENDING.name)


class _PastPivot(Exception):
    """A hold of the operation was committed: it can only be finished."""


class _HoldGone(Exception):
    """A hold expired or was released before its commit: its units are back."""


class _NotCommitted(Exception):
    """A commit failed before any commit of the operation succeeded."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Progress:
    """What this driver knows it did before the local write."""

    holds: list[Held] = field(default_factory=list)
    attempted: int = 0  # reservations whose Reserve was sent (the last one may have failed)
    written: bool = False


def _interrupted() -> DomainError:
    return Reason.CONCURRENT_CHANGE.error(
        "the request was interrupted; retry with the same request_id"
    )


def _unfinished(error: Exception) -> DomainError:
    """Past the pivot: the operation is finished by a retry or the recovery."""
    if isinstance(error, Unavailable):
        return error
    log.warning("pool operation interrupted after its commit", exc_info=error)
    return Reason.OPERATION_UNFINISHED.error(
        "the request is done in the pool but not finished here yet; retry with the same request_id",
    )


class PoolOperations:
    """Runs the pool operations of one service instance (and recovers everyone's)."""

    def __init__(
        self,
        uow: ProvisioningUnitOfWork,
        pool: PoolGateway,
        billing: BillingGateway,
        undo: Mapping[str, LocalUndo],
        encoders: Mapping[str, Encoder],
        lease_seconds: float,
        after_step: StepObserver | None = None,
    ) -> None:
        self._uow = uow
        self._pool = pool
        self._billing = billing
        self._undo_locally_by_kind = dict(undo)
        self._encoders = dict(encoders)
        self._lease_seconds = lease_seconds
        self._after_step = after_step

    # --- the caller's side ----------------------------------------------------------------

    async def run(
        self,
        key: IdempotencyKey,
        prepare: Callable[[], Awaitable[Plan | Answered]],
        write: LocalWrite[Any],
    ) -> bytes:
        """The response of the request `key` names (encoded as its kind's responses are):
        stored if it completed, otherwise the operation `prepare` plans (its checks run
        only for a new attempt; it may also answer at once, with no operation) driven to
        its end. `write` is the local effect; it may raise a DomainError, which undoes
        the operation."""
        for _ in range(_WAITS):
            async with self._uow.reading() as tx:
                stored = await replayed(tx.requests, key)
                found = await tx.operations.get_operation(key.company_id, key.request_id)
            if stored is not None:
                return stored
            if found is not None:
                if found.fingerprint != key.fingerprint:
                    raise reused(key)
                if found.step is Step.DONE:
                    assert found.response is not None
                    return found.response
            if found is None:
                prepared = await prepare()
                if isinstance(prepared, Answered):
                    return self._encoders[prepared.kind](prepared.result)
                operation = await self._start(key, prepared)
            else:
                operation = await self._lease(found)
            if operation is not None:
                encode = self._encoders[operation.plan.kind]
                response = await self._drive(operation, encode, write)
                assert response is not None
                return response
            await asyncio.sleep(_WAIT_SECONDS)  # another driver has it
        raise Reason.OPERATION_IN_PROGRESS.error(
            "this request is still under way; retry with the same request_id",
            {"request_id": key.request_id},
        )

    async def _start(self, key: IdempotencyKey, plan: Plan) -> PoolOperation | None:
        async with self._uow.transaction() as tx:
            return await tx.operations.start_operation(
                key.company_id,
                key.request_id,
                key.fingerprint,
                plan,
                uuid.uuid4(),  # the attempt
                uuid.uuid4(),  # this driver
                self._lease_seconds,
            )

    async def _lease(self, found: PoolOperation) -> PoolOperation | None:
        async with self._uow.transaction() as tx:
            return await tx.operations.lease_operation(
                found.company_id, found.request_id, uuid.uuid4(), self._lease_seconds
            )

    # --- the recovery ---------------------------------------------------------------------

    async def recover(self, limit: int = 100) -> int:
        """Settles operations whose driver's lease ended: undone if they had not written
        locally yet, finished otherwise. Returns how many were settled."""
        async with self._uow.reading() as tx:
            due = await tx.operations.interrupted_operations(limit)
        settled = 0
        for company_id, request_id in due:
            async with self._uow.transaction() as tx:
                operation = await tx.operations.lease_operation(
                    company_id, request_id, uuid.uuid4(), self._lease_seconds
                )
            if operation is None:
                continue  # someone else took it
            try:
                await self._drive(operation, None, None)
                settled += 1
            except Unavailable as error:
                log.warning("recovering operation %s: %s; will retry", request_id, error.reason)
            except DomainError as error:
                settled += 1
                log.info("recovered operation %s: %s", request_id, error.reason)
            except Exception:
                log.exception("recovering operation %s failed; will retry", request_id)
        return settled

    async def run_recovery(self, interval_seconds: float) -> None:
        """Recovers interrupted operations at start-up and then periodically."""
        while True:
            try:
                await self.recover()
            except Exception as error:
                if not is_database_unreachable(error):  # the database watch logs outages
                    log.warning(
                        "looking for interrupted operations failed; will retry", exc_info=True
                    )
            await asyncio.sleep(interval_seconds)

    # --- driving --------------------------------------------------------------------------

    async def _drive(
        self,
        operation: PoolOperation,
        encode: Callable[[R], bytes] | None,
        write: LocalWrite[R] | None,
    ) -> bytes | None:
        """Runs a leased operation to DONE or undoes it; the recovery (no `write`) undoes one
        that has not written locally and finishes one that has."""
        try:
            if write is None or encode is None:  # the recovery: the step says what to do
                if operation.step.on_recovery is Recovery.UNDO:
                    try:
                        await self._undo(operation, None)
                        return None
                    except _PastPivot:  # another driver wrote and committed meanwhile
                        operation = await self._reload(operation)
            elif operation.step is Step.RESERVING:
                operation = await self._reserve_and_write(operation, encode, write)
            if operation.step is Step.WRITTEN:
                operation = await self._finish(operation, by_caller=write is not None)
            if operation.step is Step.DONE:
                return operation.response
            raise _interrupted()
        finally:
            try:
                async with self._uow.transaction() as tx:
                    await tx.operations.drop_lease(operation)
            except Exception as error:  # the lease runs out by itself
                if not self._uow.is_outage(error):
                    raise

    async def _after(self, operation: PoolOperation, step: str) -> None:
        if self._after_step is not None:
            await self._after_step(operation.plan.kind, step)

    async def _reserve_and_write(
        self, operation: PoolOperation, encode: Callable[[R], bytes], write: LocalWrite[R]
    ) -> PoolOperation:
        progress = _Progress()
        try:
            operation = await self._reserve(operation, progress)
            await self._after(operation, "reserved")
            operation = await self._write(operation, progress, encode, write)
            await self._after(operation, "written")
            return operation
        except Exception as error:
            return await self._give_up(operation, progress, error)

    async def _reserve(self, operation: PoolOperation, progress: _Progress) -> PoolOperation:
        for index, reservation in enumerate(operation.plan.reservations):
            progress.attempted = index + 1
            try:
                progress.holds.append(await self._hold(operation, index, reservation))
                continue
            except FailedPrecondition as error:
                if not (
                    error.reason == Reason.NO_LICENSE_AVAILABLE.name
                    and reservation.purchase_if_needed
                    and self._billing.configured
                    and operation.round == 0
                ):
                    raise
                shortfall = int(error.metadata.get("shortfall", reservation.quantity))
            operation = await self._purchase(operation, reservation, shortfall)
            progress.holds.append(await self._hold(operation, index, reservation))
        return operation

    async def _purchase(
        self, operation: PoolOperation, reservation: Reservation, shortfall: int
    ) -> PoolOperation:
        """Buys the shortfall through billing; the holds then use the next round of pool
        request ids (the first round's Reserve failed, and the pool remembers no failure,
        so the new units are held under new ids)."""
        assert len(operation.plan.reservations) == 1  # the round is the operation's
        async with self._uow.transaction() as tx:
            if not await tx.operations.set_round(operation, 1):
                raise _interrupted()
        operation = replace(operation, round=1)
        code = reservation.license_type
        await self._billing.purchase(
            operation.company_id,
            operation.plan.office_id,
            code,
            shortfall,
            # The quantity is part of the id: a retry that finds another shortfall is
            # another purchase, not a reuse of this one's id.
            operation.request_id_of(f"purchase-{code}-{shortfall}"),
        )
        return operation

    async def _hold(self, operation: PoolOperation, index: int, reservation: Reservation) -> Held:
        reserved = await self._pool.reserve(
            operation.request_id_of(f"reserve-{index}-r{operation.round}"),
            operation.company_id,
            operation.plan.office_id,
            reservation.license_type,
            reservation.quantity,
            HOLD_SECONDS,
            allow_partial=False,
        )
        assert reserved.hold_id is not None
        return Held(reserved.hold_id, reserved.unit_ids, reserved.sources)

    async def _write(
        self,
        operation: PoolOperation,
        progress: _Progress,
        encode: Callable[[R], bytes],
        write: LocalWrite[R],
    ) -> PoolOperation:
        """One local transaction: the step checked (and the row locked) first, then the
        local effect, then the operation WRITTEN with its holds and response."""
        holding = replace(operation, holds=tuple(progress.holds))
        async with self._uow.transaction() as tx:
            current = await tx.operations.get_operation(
                operation.company_id, operation.request_id, for_update=True
            )
            if current is None or (current.attempt, current.step, current.round) != (
                operation.attempt,
                Step.RESERVING,
                operation.round,
            ):
                if (
                    current is not None
                    and current.attempt == operation.attempt
                    and current.step in (Step.WRITTEN, Step.DONE)
                ):
                    progress.written = True
                    return current  # another driver wrote it; finish it
                raise _interrupted()
            now = await tx.clock.now()
            response = encode(await write(tx, now, holding))
            written = await tx.operations.mark_written(
                operation, holding.holds, response, self._lease_seconds
            )
        progress.written = True
        return replace(written, lease_owner=operation.lease_owner)

    async def _finish(self, operation: PoolOperation, by_caller: bool) -> PoolOperation:
        """Commits the holds, gives back what the operation replaces, completes. A caller
        whose first commit fails undoes the operation (unless the commit happened after
        all); the recovery leaves it for its next pass."""
        for _ in range(3):
            try:
                return await self._commit_and_complete(operation)
            except _NotCommitted as failed:
                if not by_caller:
                    raise failed.error from None
                progress = _Progress(list(operation.holds), len(operation.holds), written=True)
                # Returns only if a hold turned out committed (a commit whose answer was
                # lost): then the operation is finished after all.
                operation = await self._give_up(operation, progress, failed.error)
        raise _unfinished(Reason.CONCURRENT_CHANGE.error("the operation kept changing"))

    async def _commit_and_complete(self, operation: PoolOperation) -> PoolOperation:
        committed = 0
        try:
            for index, held in enumerate(operation.holds):
                await self._commit(operation, index, held)
                committed += 1
        except _HoldGone:
            await self._undo_after_expiry(operation, committed)
        except Exception as error:
            if committed == 0:
                raise _NotCommitted(error) from error
            raise _unfinished(error) from error
        try:
            await self._after(operation, "committed")
            await self._give_back(operation)
            return await self._complete(operation)
        except Exception as error:
            raise _unfinished(error) from error

    async def _commit(self, operation: PoolOperation, index: int, held: Held) -> None:
        assignees = [
            (AssigneeKind(kind), assignee)
            for kind, assignee in operation.plan.reservations[index].assignees
        ]
        try:
            await self._pool.commit(
                operation.request_id_of(f"commit-{index}"),
                operation.company_id,
                held.hold_id,
                assignees,
            )
        except FailedPrecondition as error:
            if error.reason not in _GONE:
                raise
            # Also what a replay says once the pool forgot our commit's request_id.
            if (
                await self._pool.hold_state(operation.company_id, held.hold_id)
                is not HoldState.COMMITTED
            ):
                raise _HoldGone() from None

    async def _give_back(self, operation: PoolOperation) -> None:
        """The units the operation replaces (a user's previous license) go back to the
        pool. Past the pivot nothing may stop the operation for good: a refusal is logged
        and the unit stays as the pool has it."""
        if not operation.plan.returns:
            return
        try:
            await self._pool.return_units(
                operation.request_id_of("return"), operation.company_id, operation.plan.returns
            )
        except (FailedPrecondition, NotFound, InvalidArgument) as error:
            log.error(
                "operation %s could not give back %s: %s",
                operation.request_id,
                [str(u) for u in operation.plan.returns],
                error.reason,
            )

    async def _complete(self, operation: PoolOperation) -> PoolOperation:
        """WRITTEN -> DONE, and the response stored under the caller's request_id."""
        key = IdempotencyKey(operation.company_id, operation.request_id, operation.fingerprint)
        async with self._uow.transaction() as tx:
            current = await tx.operations.get_operation(
                operation.company_id, operation.request_id, for_update=True
            )
            assert current is not None
            if current.attempt != operation.attempt or current.step is not Step.WRITTEN:
                if current.attempt == operation.attempt and current.step is Step.DONE:
                    return current
                raise _interrupted()
            assert current.response is not None
            try:
                taken = await tx.requests.claim(key) is not None
            except InvalidArgument:  # REQUEST_ID_REUSED
                taken = True
            if taken:  # another method used the request_id meanwhile: ours is done anyway
                log.warning("request_id %s was used by another request", key.request_id)
            else:
                await tx.requests.complete(key, current.response)
            await tx.operations.complete_operation(current)
        return replace(current, step=Step.DONE)

    # --- undoing --------------------------------------------------------------------------

    async def _give_up(
        self, operation: PoolOperation, progress: _Progress, error: Exception
    ) -> PoolOperation:
        """Undoes the operation, then raises `error` (precisely). Returns the operation
        instead if a hold turned out committed: it is then to be finished. If the undo
        cannot be done now (the pool or the database is down), the recovery does it."""
        try:
            await self._undo(operation, progress)
        except _PastPivot:
            return await self._reload(operation)
        except Exception:
            log.warning("could not undo operation %s now", operation.request_id, exc_info=True)
            if progress.written:  # the recovery will finish it: the outcome is not known yet
                raise _unfinished(error) from error
            raise self._uow.failure(error) from error
        raise self._uow.failure(error) from error

    async def _reload(self, operation: PoolOperation) -> PoolOperation:
        """The operation as stored, still driven by this driver."""
        async with self._uow.reading() as tx:
            current = await tx.operations.get_operation(operation.company_id, operation.request_id)
        assert current is not None
        return replace(current, lease_owner=operation.lease_owner)

    async def _undo(self, operation: PoolOperation, progress: _Progress | None) -> None:
        """Releases the operation's holds (units back exactly as they were), then removes
        its local effect and its record. Raises _PastPivot if a hold was committed."""
        for index, held in await self._holds_of(operation, progress):
            await self._release(operation, index, held)
        await self._undo_locally(operation)

    async def _undo_after_expiry(self, operation: PoolOperation, committed: int) -> None:
        """A hold expired before its commit (a pause longer than the hold, or a recovery
        long after a crash): its units are back where they were, so the operation is
        undone. Holds committed before it (an operation with several) can no longer be
        released: their units are given back with ReturnUnits."""
        try:
            if committed:
                units = [u for held in operation.holds[:committed] for u in held.unit_ids]
                log.warning(
                    "operation %s: a hold expired after %d commit(s); giving back %s",
                    operation.request_id,
                    committed,
                    [str(u) for u in units],
                )
                await self._pool.return_units(
                    operation.request_id_of("give-back"), operation.company_id, units
                )
            for index, held in enumerate(operation.holds):
                if index >= committed:
                    await self._release(operation, index, held)
            await self._undo_locally(operation)
        except Exception as error:
            raise _unfinished(error) from error
        raise Aborted(
            "HOLD_EXPIRED",
            "the request took longer than its units could be held; nothing was done, retry "
            "with the same request_id",
        )

    async def _holds_of(
        self, operation: PoolOperation, progress: _Progress | None
    ) -> list[tuple[int, Held]]:
        """The holds to release: as written, as this driver made them, or (for what it
        does not know) as the pool replays the Reserve calls that may have been made."""
        async with self._uow.reading() as tx:
            current = await tx.operations.get_operation(operation.company_id, operation.request_id)
        if current is None or current.attempt != operation.attempt:
            return []
        if current.step is Step.DONE:
            raise _PastPivot()
        if current.step is Step.WRITTEN:
            return list(enumerate(current.holds))
        known = progress.holds if progress is not None else []
        attempted = progress.attempted if progress is not None else len(current.plan.reservations)
        holds = list(enumerate(known))
        for index in range(len(known), attempted):
            reservation = current.plan.reservations[index]
            # A refusal: no hold was made under this request_id.
            with contextlib.suppress(FailedPrecondition, NotFound, InvalidArgument):
                holds.append((index, await self._hold(current, index, reservation)))
        return holds

    async def _release(self, operation: PoolOperation, index: int, held: Held) -> None:
        try:
            await self._pool.release(
                operation.request_id_of(f"release-{index}-r{operation.round}"),
                operation.company_id,
                held.hold_id,
            )
        except FailedPrecondition as error:
            if (
                error.reason == Reason.HOLD_NOT_PENDING.name
            ):  # committed: the pool says so only then
                raise _PastPivot() from None
            raise

    async def _undo_locally(self, operation: PoolOperation) -> None:
        async with self._uow.transaction() as tx:
            current = await tx.operations.get_operation(
                operation.company_id, operation.request_id, for_update=True
            )
            if current is None or current.attempt != operation.attempt:
                return
            if current.step not in UNFINISHED:
                return
            if current.step is Step.WRITTEN:
                now = await tx.clock.now()
                await self._undo_locally_by_kind[current.plan.kind](tx, now, current)
            await tx.operations.delete_operation(current)
