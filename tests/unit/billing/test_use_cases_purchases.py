"""Purchases on the in-memory unit of work and pool (docs/product.md, "Checkout and
purchases"): restored first, then the pool, then new units (only those are charged); a
refusal before the pivot undoes everything; a crash at any step is resumed from the
step the record kept, by a retry (carried forward) or by the recovery (undone before
the pivot, completed after it)."""

from __future__ import annotations

import pytest

from libs.common.errors import DomainError, FailedPrecondition, Unavailable
from libs.common.reasons import Reason
from services.billing.domain import cycles, proration
from services.billing.domain.model import HoldState, PurchaseState, Split
from services.billing.domain.purchase import Action, Step
from tests.unit.billing.conftest import JAN_1, NOW, Crash, Shop

CHARGE_ONE = proration.prorate(1000, 1, cycles.cycle_at(JAN_1, NOW), NOW)


async def refused(call: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_a_purchase_restores_first_then_takes_from_the_pool_then_adds(shop: Shop) -> None:
    shop.enable()
    restored = shop.add("a", 1, state="REMOVAL_SCHEDULED")
    pooled = shop.pooled(1)
    done = await shop.buy("a", 3)
    assert done.state is PurchaseState.COMPLETED
    assert done.split == Split(restored=1, from_pool=1, new=1)
    assert done.amount == CHARGE_ONE  # restored and pooled units are free
    assert [str(u) for u in done.unit_ids[:2]] == [*restored, *pooled]
    assert shop.pool.states(shop.offices["a"]) == {"SPARE": 3}


async def test_a_purchase_asks_the_pool_once_per_thing_it_needs(shop: Shop) -> None:
    shop.enable()
    shop.add("a", 1, state="REMOVAL_SCHEDULED")
    shop.pooled(1)
    shop.pool.calls.clear()
    await shop.buy("a", 3)
    # No second look at the pool, no replay only to learn unit ids.
    assert shop.pool.calls == [
        "pool_enabled",
        "availability",
        "restore_from_removal",
        "reserve",
        "commit",
        "add_units",
    ]


async def test_nothing_to_restore_or_to_take_is_one_call_for_the_new_units(shop: Shop) -> None:
    shop.enable()
    shop.pool.calls.clear()
    done = await shop.buy("a", 2)
    assert done.split == Split(0, 0, 2)
    assert shop.pool.calls == ["pool_enabled", "availability", "add_units"]


async def test_new_units_name_their_purchase_for_their_history(shop: Shop) -> None:
    done = await shop.buy("a", 2)
    assert [shop.pool.origins[str(u)] for u in done.unit_ids] == [
        f"purchase {done.purchase_id}"
    ] * 2


async def test_without_a_pool_the_returns_of_other_offices_are_not_taken(shop: Shop) -> None:
    shop.pooled(2)  # the currency's pool is not enabled
    done = await shop.buy("a", 2)
    assert done.split == Split(0, 0, 2)
    assert "reserve" not in shop.pool.calls


async def test_own_returns_in_grace_come_back_before_new_units(shop: Shop) -> None:
    shop.enable()
    shop.pooled(1, returned_by="a")
    done = await shop.buy("a", 1)
    assert done.split == Split(0, 1, 0)
    assert done.amount == 0


async def test_a_refused_commit_undoes_the_purchase_and_charges_nothing(shop: Shop) -> None:
    shop.enable()
    shop.add("a", 1, state="REMOVAL_SCHEDULED")
    shop.pooled(1)
    shop.pool.refuse("commit", Reason.HOLD_EXPIRED.error("the hold expired"))
    error = await refused(shop.buy("a", 2))
    assert error.reason == "HOLD_EXPIRED"
    failed = shop.only_purchase()
    assert (failed.state, failed.step, failed.amount) == (PurchaseState.FAILED, Step.UNDONE, 0)
    assert failed.failure_reason == "HOLD_EXPIRED"
    # The hold went back, the restored unit is scheduled for removal again.
    assert [h.state for h in shop.pool.holds.values()] == [HoldState.RELEASED]
    assert shop.pool.states() == {"POOLED": 1, "REMOVAL_SCHEDULED": 1}


async def test_a_refused_reserve_undoes_the_restores(shop: Shop) -> None:
    shop.enable()
    shop.add("a", 2, state="REMOVAL_SCHEDULED")
    shop.pooled(1)
    shop.pool.refuse("reserve", FailedPrecondition("POOL_NOT_ENABLED", "disabled meanwhile"))
    error = await refused(shop.buy("a", 3))
    assert error.reason == "POOL_NOT_ENABLED"
    assert shop.pool.states(shop.offices["a"]) == {"REMOVAL_SCHEDULED": 2}
    assert shop.only_purchase().state is PurchaseState.FAILED


async def test_a_pool_outage_before_the_pivot_fails_the_purchase_for_a_retry(shop: Shop) -> None:
    shop.add("a", 1, state="REMOVAL_SCHEDULED")
    shop.pool.refuse("add_units", Unavailable("POOL_UNAVAILABLE", "down"))  # after the pivot
    shop.pool.refuse("restore_from_removal", Unavailable("POOL_UNAVAILABLE", "down"))
    command = shop.command("a", 2)
    error = await refused(shop.saga.purchase(command))
    assert error.reason == "POOL_UNAVAILABLE"
    assert shop.only_purchase().state is PurchaseState.FAILED
    assert shop.pool.states() == {"REMOVAL_SCHEDULED": 1}
    # The retry is a new attempt: it restores, then the outage after the pivot stops it.
    error = await refused(shop.saga.purchase(command))
    assert error.reason == "POOL_UNAVAILABLE"
    stopped = shop.only_purchase()
    assert (stopped.state, stopped.step, stopped.attempt) == (
        PurchaseState.PENDING,
        Step.ADDING,
        2,
    )
    done = await shop.saga.purchase(command)  # the pool is back: carried forward
    assert (done.state, done.split) == (PurchaseState.COMPLETED, Split(1, 0, 1))
    assert shop.pool.states() == {"SPARE": 2}


async def test_a_retry_of_a_completed_purchase_answers_it_without_the_pool(shop: Shop) -> None:
    command = shop.command("a", 1)
    first = await shop.saga.purchase(command)
    shop.pool.calls.clear()
    assert await shop.saga.purchase(command) == first
    assert shop.pool.calls == []


async def test_a_request_id_reused_for_another_purchase_is_refused(shop: Shop) -> None:
    first = shop.command("a", 1)
    await shop.saga.purchase(first)
    other = shop.command("a", 2, request_id=first.request_id)
    assert (await refused(shop.saga.purchase(other))).reason == "REQUEST_ID_REUSED"


# --- crashes: the step kept, then a retry or the recovery -----------------------------------


async def crashed_after(shop: Shop, action: Action) -> None:
    """A purchase of 3 (1 restored, 1 from the pool, 1 new) whose driver died right after
    the pool call `action`."""
    shop.enable()
    shop.add("a", 1, state="REMOVAL_SCHEDULED")
    shop.pooled(1)
    shop.crash_after.append(action)
    with pytest.raises(Crash):
        await shop.saga.purchase(shop.command("a", 3, request_id="r-1"))
    shop.uow.state.end_leases()


KEPT = {
    Action.RESTORE: Step.RESTORING,
    Action.RESERVE: Step.RESERVING,
    Action.COMMIT: Step.COMMITTING,
    Action.ADD: Step.ADDING,
}


@pytest.mark.parametrize("action", list(KEPT))
async def test_a_crash_leaves_the_step_it_reached(shop: Shop, action: Action) -> None:
    await crashed_after(shop, action)
    kept = shop.only_purchase()
    assert (kept.state, kept.step) == (PurchaseState.PENDING, KEPT[action])


@pytest.mark.parametrize("action", list(KEPT))
async def test_a_retry_carries_a_crashed_purchase_forward(shop: Shop, action: Action) -> None:
    await crashed_after(shop, action)
    done = await shop.saga.purchase(shop.command("a", 3, request_id="r-1"))
    assert (done.state, done.split, done.amount) == (
        PurchaseState.COMPLETED,
        Split(1, 1, 1),
        CHARGE_ONE,
    )
    assert len(set(done.unit_ids)) == 3
    # Every pool call was replayed, none repeated: three units in all, all the office's.
    assert shop.pool.states() == {"SPARE": 3}


@pytest.mark.parametrize("action", [Action.RESTORE, Action.RESERVE])
async def test_the_recovery_undoes_a_purchase_that_crashed_before_the_pivot(
    shop: Shop, action: Action
) -> None:
    await crashed_after(shop, action)
    assert await shop.saga.recover_interrupted() == 1
    failed = shop.only_purchase()
    assert (failed.state, failed.failure_reason) == (PurchaseState.FAILED, "PURCHASE_INTERRUPTED")
    assert shop.pool.states() == {"REMOVAL_SCHEDULED": 1, "POOLED": 1}
    assert all(h.state is HoldState.RELEASED for h in shop.pool.holds.values())


@pytest.mark.parametrize("action", [Action.COMMIT, Action.ADD])
async def test_the_recovery_completes_a_purchase_that_crashed_after_the_pivot(
    shop: Shop, action: Action
) -> None:
    await crashed_after(shop, action)
    assert await shop.saga.recover_interrupted() == 1
    done = shop.only_purchase()
    assert (done.state, done.amount) == (PurchaseState.COMPLETED, CHARGE_ONE)
    assert shop.pool.states() == {"SPARE": 3}


async def test_the_recovery_undoes_a_purchase_whose_commit_never_held(shop: Shop) -> None:
    await crashed_after(shop, Action.RESERVE)
    # Moved on to the pivot by hand: the commit was never sent.
    stored = shop.uow.state.purchases[shop.only_purchase().purchase_id]
    (hold,) = shop.pool.holds.values()
    from dataclasses import replace

    stored.purchase = replace(
        stored.purchase,
        step=Step.COMMITTING,
        split=Split(1, 1, 1),
        hold_id=hold.hold_id,
    )
    await shop.saga.recover_interrupted()
    failed = shop.only_purchase()
    assert (failed.state, failed.failure_reason) == (PurchaseState.FAILED, "PURCHASE_INTERRUPTED")
    assert hold.state is HoldState.RELEASED
    assert shop.pool.states() == {"REMOVAL_SCHEDULED": 1, "POOLED": 1}


async def test_an_undo_stopped_by_an_outage_is_finished_by_the_recovery(shop: Shop) -> None:
    shop.enable()
    shop.pooled(1)
    shop.pool.refuse("commit", Reason.HOLD_EXPIRED.error("expired"))
    shop.pool.refuse("hold_state", Unavailable("POOL_UNAVAILABLE", "down"))
    assert (await refused(shop.buy("a", 2))).reason == "POOL_UNAVAILABLE"
    stopped = shop.only_purchase()
    assert (stopped.state, stopped.step) == (PurchaseState.PENDING, Step.UNDOING_COMMITTING)
    shop.uow.state.end_leases()
    await shop.saga.recover_interrupted()
    failed = shop.only_purchase()
    # The reason it was undone for is kept for its outcome.
    assert (failed.state, failed.failure_reason) == (PurchaseState.FAILED, "HOLD_EXPIRED")
    assert shop.pool.states() == {"POOLED": 1}


# --- quotes -----------------------------------------------------------------------------------


async def test_a_held_quote_is_bought_with_its_own_hold(shop: Shop) -> None:
    shop.enable()
    shop.pooled(2)
    quote = await shop.quote("a", 3, hold=True)
    assert quote.split == Split(0, 2, 1)
    shop.pool.calls.clear()
    done = await shop.buy("", None, quote_id=quote.quote_id)  # type: ignore[arg-type]
    assert (done.split, done.amount) == (quote.split, quote.amount)
    assert "reserve" not in shop.pool.calls
    assert shop.pool.holds[quote.hold_id].state is HoldState.COMMITTED  # type: ignore[index]


async def test_a_quote_whose_hold_expired_fails_as_expired(shop: Shop) -> None:
    shop.enable()
    shop.pooled(1)
    quote = await shop.quote("a", 1, hold=True)
    assert quote.hold_id is not None
    shop.pool.expire(quote.hold_id)
    error = await refused(shop.buy("", None, quote_id=quote.quote_id))  # type: ignore[arg-type]
    assert error.reason == "QUOTE_EXPIRED"
    assert shop.pool.states() == {"POOLED": 1}


async def test_a_quote_is_bought_once(shop: Shop) -> None:
    quote = await shop.quote("a", 1, hold=True)
    await shop.buy("", None, quote_id=quote.quote_id)  # type: ignore[arg-type]
    error = await refused(shop.buy("", None, quote_id=quote.quote_id))  # type: ignore[arg-type]
    assert error.reason == "QUOTE_ALREADY_USED"


async def test_an_interrupted_purchase_keeps_its_reason_while_the_pool_is_down(
    shop: Shop,
) -> None:
    await crashed_after(shop, Action.RESERVE)
    shop.pool.refuse("reserve", Unavailable("POOL_UNAVAILABLE", "down"))  # the replay
    assert await shop.saga.recover_interrupted() == 0
    waiting = shop.only_purchase()
    assert (waiting.state, waiting.step, waiting.failure_reason) == (
        PurchaseState.PENDING,
        Step.UNDOING_RESERVING,
        "PURCHASE_INTERRUPTED",
    )
    assert shop.pool.calls.count("reserve") == 2  # the first attempt, one replay
    shop.uow.state.end_leases()
    assert await shop.saga.recover_interrupted() == 1
    failed = shop.only_purchase()
    assert (failed.state, failed.failure_reason) == (PurchaseState.FAILED, "PURCHASE_INTERRUPTED")
    assert shop.pool.states() == {"REMOVAL_SCHEDULED": 1, "POOLED": 1}
