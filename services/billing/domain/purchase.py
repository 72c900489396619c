"""The purchase saga as a state machine (docs/product.md, "Checkout and purchases").

A purchase is a durable record written before any pool call; its `Step` says how far it
got. Each forward step is one pool call with a request_id derived from the purchase, its
attempt and the call, so a replay never has a second effect:

    CREATED     nothing done yet
    RESTORING   RestoreFromRemoval: the office's scheduled removals come back (free)
    RESERVING   Reserve (allow_partial) from the office's returns in grace and the pool,
                for the quantity recorded with the step (a quote's hold is used instead)
    COMMITTING  Commit the hold: the pool units become SPARE of the office. The pivot:
                before it everything can be undone; after it nothing fails for good
    ADDING      AddUnits for the new units, then the charge is recorded
    DONE        COMPLETED (the charge recorded)

A refusal before the pivot undoes what was done: the purchase moves to the undo state of
the step it reached (`undo_of`), whose plan (`undo_plan`) says what to put back; then
UNDONE (FAILED, nothing charged). A driver that died leaves the record at its last step:
a caller retrying the purchase carries it forward from there, the recovery undoes it
(before the pivot) or completes it (after).

Everything here is pure: which transitions are allowed, what to do next from a step, what
a refusal leads to, what to undo.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from libs.common.errors import ErrorKind


class Step(enum.StrEnum):
    """Where a purchase is. The values are what the purchase record stores."""

    CREATED = "CREATED"
    RESTORING = "RESTORING"
    RESERVING = "RESERVING"
    COMMITTING = "COMMITTING"
    ADDING = "ADDING"
    DONE = "DONE"
    UNDOING_CREATED = "UNDOING:CREATED"
    UNDOING_RESTORING = "UNDOING:RESTORING"
    UNDOING_RESERVING = "UNDOING:RESERVING"
    UNDOING_COMMITTING = "UNDOING:COMMITTING"
    UNDONE = "UNDONE"

    @property
    def before_pivot(self) -> bool:
        """Whether everything done so far can still be undone (no hold committed)."""
        return self in BEFORE_PIVOT

    @property
    def undoing(self) -> bool:
        return self in _REACHED

    @property
    def settled(self) -> bool:
        return self in (Step.DONE, Step.UNDONE)

    @property
    def reached(self) -> Step:
        """The forward step an undo started from (the step itself otherwise)."""
        return _REACHED.get(self, self)


BEFORE_PIVOT = frozenset({Step.CREATED, Step.RESTORING, Step.RESERVING})
_UNDO_OF: Mapping[Step, Step] = {
    Step.CREATED: Step.UNDOING_CREATED,
    Step.RESTORING: Step.UNDOING_RESTORING,
    Step.RESERVING: Step.UNDOING_RESERVING,
    Step.COMMITTING: Step.UNDOING_COMMITTING,
}
_REACHED: Mapping[Step, Step] = {undo: step for step, undo in _UNDO_OF.items()}

TRANSITIONS: Mapping[Step, frozenset[Step]] = {
    # Restoring and reserving are skipped when there is nothing to restore or to take
    # from the pool; the commit is skipped without a hold, adding without new units.
    Step.CREATED: frozenset(
        {Step.RESTORING, Step.RESERVING, Step.COMMITTING, Step.ADDING, Step.UNDOING_CREATED}
    ),
    Step.RESTORING: frozenset(
        {Step.RESERVING, Step.COMMITTING, Step.ADDING, Step.DONE, Step.UNDOING_RESTORING}
    ),
    Step.RESERVING: frozenset({Step.COMMITTING, Step.ADDING, Step.UNDOING_RESERVING}),
    Step.COMMITTING: frozenset({Step.ADDING, Step.DONE, Step.UNDOING_COMMITTING}),
    Step.ADDING: frozenset({Step.DONE}),
    Step.UNDOING_CREATED: frozenset({Step.UNDONE}),
    Step.UNDOING_RESTORING: frozenset({Step.UNDONE}),
    Step.UNDOING_RESERVING: frozenset({Step.UNDONE}),
    # The undo found the hold committed (the commit went through after all): the
    # purchase is past the pivot and goes on from the commit.
    Step.UNDOING_COMMITTING: frozenset({Step.UNDONE, Step.COMMITTING}),
    Step.DONE: frozenset(),
    Step.UNDONE: frozenset(),
}


class InvalidTransition(Exception):
    """A driver tried a move the saga does not allow (a bug, never a caller's error)."""


def check(current: Step, to: Step) -> Step:
    """`to`, if the saga allows moving there from `current`."""
    if to not in TRANSITIONS[current]:
        raise InvalidTransition(f"a purchase cannot move from {current} to {to}")
    return to


def undo_of(step: Step) -> Step:
    """The undo state of a step before the pivot (or at it, before the commit held)."""
    return _UNDO_OF[step]


class Action(enum.StrEnum):
    """What a driver does next. The forward values name the pool call made."""

    RESTORE = "restore"
    RESERVE = "reserve"
    COMMIT = "commit"
    CHECK_HOLD = "check-hold"  # resumed at the pivot by the recovery: did the commit hold?
    ADD = "add"
    UNDO = "undo"
    NOTHING = "nothing"  # settled


def next_action(step: Step, by_caller: bool) -> Action:
    """What to do from `step`. A caller (a retry of the purchase) carries it forward; the
    recovery (nobody waits for the outcome) undoes what did not reach the pivot."""
    if step.settled:
        return Action.NOTHING
    if step.undoing:
        return Action.UNDO
    if step.before_pivot:
        if not by_caller:
            return Action.UNDO
        return Action.RESERVE if step is Step.RESERVING else Action.RESTORE
    if step is Step.COMMITTING:
        return Action.COMMIT if by_caller else Action.CHECK_HOLD
    return Action.ADD


def after_split(has_hold: bool, new_units: int) -> Step:
    """The step once the split is known: commit the hold, else add, else done."""
    if has_hold:
        return Step.COMMITTING
    return Step.ADDING if new_units else Step.DONE


def after_commit(new_units: int) -> Step:
    return Step.ADDING if new_units else Step.DONE


class OnRefusal(enum.Enum):
    """What a failed pool call at a step leads to."""

    UNDO = "undo"  # undo what was done, the purchase fails with this error
    UNDO_POOL_DOWN = "undo-pool-down"  # undo; it fails as "the pool was unavailable"
    STOP = "stop"  # stay where it is: a retry or the recovery carries on


_REFUSED = frozenset(
    {ErrorKind.INVALID_ARGUMENT, ErrorKind.NOT_FOUND, ErrorKind.FAILED_PRECONDITION}
)


def on_refusal(step: Step, kind: ErrorKind) -> OnRefusal:
    """Before the pivot a refusal or an outage undoes the purchase; at the pivot only the
    pool's refusal of the commit does (the hold expired or was released: its units are
    back where they were); an outage at the pivot leaves the outcome unknown, and after
    it nothing is undone."""
    if step.before_pivot:
        if kind in _REFUSED:
            return OnRefusal.UNDO
        if kind is ErrorKind.UNAVAILABLE:
            return OnRefusal.UNDO_POOL_DOWN
        return OnRefusal.STOP
    if step is Step.COMMITTING and kind is ErrorKind.FAILED_PRECONDITION:
        return OnRefusal.UNDO
    return OnRefusal.STOP


class UndoAction(enum.StrEnum):
    RELEASE_HOLD = "release-hold"  # the hold's units go back where they were
    SCHEDULE_AGAIN = "schedule-again"  # restored units are scheduled for removal again


def undo_plan(reached: Step) -> tuple[UndoAction, ...]:
    """What to put back, in order, for a purchase undone after reaching `reached`."""
    if reached is Step.CREATED:
        return ()
    if reached is Step.RESTORING:
        return (UndoAction.SCHEDULE_AGAIN,)
    if reached in (Step.RESERVING, Step.COMMITTING):
        return (UndoAction.RELEASE_HOLD, UndoAction.SCHEDULE_AGAIN)
    raise InvalidTransition(f"a purchase at {reached} cannot be undone")


RETRIABLE_FAILURES = frozenset(
    {ErrorKind.UNAVAILABLE, ErrorKind.ABORTED, ErrorKind.DEADLINE_EXCEEDED}
)


def may_restart(failure_kind: ErrorKind | None) -> bool:
    """A purchase that failed for a passing reason runs again (a new attempt) when its
    caller retries it; one refused for good keeps its outcome."""
    return failure_kind in RETRIABLE_FAILURES
