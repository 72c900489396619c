"""The purchase saga's rules (docs/product.md, "Checkout and purchases"): which moves
are allowed, what to do next from each step, what a refusal leads to, what to undo."""

from __future__ import annotations

import pytest

from libs.common.errors import ErrorKind
from services.billing.domain.purchase import (
    BEFORE_PIVOT,
    TRANSITIONS,
    Action,
    InvalidTransition,
    OnRefusal,
    Step,
    UndoAction,
    after_commit,
    after_split,
    check,
    may_restart,
    next_action,
    on_refusal,
    undo_of,
    undo_plan,
)

FORWARD = [Step.CREATED, Step.RESTORING, Step.RESERVING, Step.COMMITTING, Step.ADDING]
UNDOING = [s for s in Step if s.undoing]


@pytest.mark.parametrize(
    ("step", "by_caller", "action"),
    [
        (Step.CREATED, True, Action.RESTORE),
        (Step.RESTORING, True, Action.RESTORE),
        (Step.RESERVING, True, Action.RESERVE),
        (Step.COMMITTING, True, Action.COMMIT),
        (Step.ADDING, True, Action.ADD),
        # The recovery undoes what did not reach the pivot, asks the pool at the pivot,
        # and completes what is past it.
        (Step.CREATED, False, Action.UNDO),
        (Step.RESTORING, False, Action.UNDO),
        (Step.RESERVING, False, Action.UNDO),
        (Step.COMMITTING, False, Action.CHECK_HOLD),
        (Step.ADDING, False, Action.ADD),
        (Step.DONE, True, Action.NOTHING),
        (Step.UNDONE, False, Action.NOTHING),
    ],
)
def test_what_to_do_next_from_each_step(step: Step, by_caller: bool, action: Action) -> None:
    assert next_action(step, by_caller) is action


@pytest.mark.parametrize("step", UNDOING)
@pytest.mark.parametrize("by_caller", [True, False])
def test_an_undo_once_begun_is_carried_on_by_anyone(step: Step, by_caller: bool) -> None:
    assert next_action(step, by_caller) is Action.UNDO


def test_the_pivot_is_the_commit() -> None:
    assert {Step.CREATED, Step.RESTORING, Step.RESERVING} == BEFORE_PIVOT
    assert [s.before_pivot for s in FORWARD] == [True, True, True, False, False]


def test_a_settled_purchase_never_moves_and_adding_only_completes() -> None:
    assert TRANSITIONS[Step.DONE] == TRANSITIONS[Step.UNDONE] == frozenset()
    assert TRANSITIONS[Step.ADDING] == {Step.DONE}
    with pytest.raises(InvalidTransition):
        check(Step.DONE, Step.ADDING)
    with pytest.raises(InvalidTransition):
        check(Step.ADDING, Step.UNDOING_COMMITTING)  # nothing after the pivot is undone


def test_each_undo_ends_failed_and_only_an_undo_at_the_pivot_can_go_forward() -> None:
    for step in UNDOING:
        assert Step.UNDONE in TRANSITIONS[step]
        assert check(step.reached, step) is step  # reached only from its own step
    assert TRANSITIONS[Step.UNDOING_COMMITTING] == {Step.UNDONE, Step.COMMITTING}
    assert all(TRANSITIONS[s] == {Step.UNDONE} for s in UNDOING if s is not Step.UNDOING_COMMITTING)


def test_undo_states_keep_the_values_earlier_records_stored() -> None:
    assert Step("UNDOING:RESERVING") is undo_of(Step.RESERVING)
    assert undo_of(Step.RESERVING).reached is Step.RESERVING
    with pytest.raises(KeyError):
        undo_of(Step.ADDING)


@pytest.mark.parametrize(
    ("reached", "plan"),
    [
        (Step.CREATED, ()),
        (Step.RESTORING, (UndoAction.SCHEDULE_AGAIN,)),
        (Step.RESERVING, (UndoAction.RELEASE_HOLD, UndoAction.SCHEDULE_AGAIN)),
        (Step.COMMITTING, (UndoAction.RELEASE_HOLD, UndoAction.SCHEDULE_AGAIN)),
    ],
)
def test_what_an_undo_puts_back(reached: Step, plan: tuple[UndoAction, ...]) -> None:
    assert undo_plan(reached) == plan


def test_nothing_past_the_pivot_has_an_undo_plan() -> None:
    with pytest.raises(InvalidTransition):
        undo_plan(Step.ADDING)


@pytest.mark.parametrize("step", sorted(BEFORE_PIVOT))
def test_before_the_pivot_a_refusal_or_an_outage_undoes(step: Step) -> None:
    for kind in (ErrorKind.INVALID_ARGUMENT, ErrorKind.NOT_FOUND, ErrorKind.FAILED_PRECONDITION):
        assert on_refusal(step, kind) is OnRefusal.UNDO
    assert on_refusal(step, ErrorKind.UNAVAILABLE) is OnRefusal.UNDO_POOL_DOWN
    assert on_refusal(step, ErrorKind.ABORTED) is OnRefusal.STOP  # a race: retry as is


def test_at_the_pivot_only_a_refused_commit_undoes() -> None:
    assert on_refusal(Step.COMMITTING, ErrorKind.FAILED_PRECONDITION) is OnRefusal.UNDO
    assert on_refusal(Step.COMMITTING, ErrorKind.UNAVAILABLE) is OnRefusal.STOP  # unknown
    for kind in ErrorKind:
        assert on_refusal(Step.ADDING, kind) is OnRefusal.STOP
        assert on_refusal(Step.UNDOING_RESERVING, kind) is OnRefusal.STOP


def test_where_a_split_and_a_commit_lead() -> None:
    assert after_split(has_hold=True, new_units=0) is Step.COMMITTING
    assert after_split(has_hold=False, new_units=2) is Step.ADDING
    assert after_split(has_hold=False, new_units=0) is Step.DONE
    assert after_commit(1) is Step.ADDING
    assert after_commit(0) is Step.DONE


def test_only_passing_failures_restart() -> None:
    assert may_restart(ErrorKind.UNAVAILABLE)
    assert may_restart(ErrorKind.ABORTED)
    assert not may_restart(ErrorKind.FAILED_PRECONDITION)
    assert not may_restart(None)
