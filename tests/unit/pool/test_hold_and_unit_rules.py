"""The rules of holds and unit states, without a database (docs/product.md, "Holds",
"License units and their states")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from libs.common.errors import DomainError
from services.pool.domain import holds, units
from services.pool.domain.errors import HoldLapsed
from services.pool.domain.model import Hold, HoldState, UnitState
from services.pool.domain.units import Payer

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def hold(state: HoldState, expires_in: timedelta = timedelta(minutes=1)) -> Hold:
    return Hold(
        hold_id=uuid.uuid4(),
        company_id=uuid.uuid4(),
        office_id=uuid.uuid4(),
        currency="USD",
        license_type="connect",
        state=state,
        unit_ids=(uuid.uuid4(), uuid.uuid4()),
        expires_at=NOW + expires_in,
        receipt_id=uuid.uuid4(),
        created_at=NOW,
        resolved_at=None,
    )


@pytest.mark.parametrize("state", [HoldState.COMMITTED, HoldState.RELEASED, HoldState.EXPIRED])
def test_only_pending_holds_fall_due(state: HoldState) -> None:
    assert holds.is_due(hold(HoldState.PENDING, timedelta(0)), NOW)
    assert not holds.is_due(hold(HoldState.PENDING, timedelta(microseconds=1)), NOW)
    assert not holds.is_due(hold(state, -timedelta(minutes=1)), NOW)


@pytest.mark.parametrize(
    ("state", "expires_in", "reason"),
    [
        (HoldState.PENDING, timedelta(0), "HOLD_EXPIRED"),
        (HoldState.EXPIRED, -timedelta(minutes=1), "HOLD_EXPIRED"),
        (HoldState.COMMITTED, timedelta(minutes=1), "HOLD_NOT_PENDING"),
        (HoldState.RELEASED, timedelta(minutes=1), "HOLD_NOT_PENDING"),
    ],
)
def test_commit_refusals(state: HoldState, expires_in: timedelta, reason: str) -> None:
    with pytest.raises(DomainError) as refused:
        holds.check_commit(hold(state, expires_in), NOW, 0)
    assert refused.value.reason == reason
    assert isinstance(refused.value, HoldLapsed) is (state is HoldState.PENDING)


def test_commit_in_time_with_one_assignee_per_unit_or_none() -> None:
    holds.check_commit(hold(HoldState.PENDING), NOW, 0)
    holds.check_commit(hold(HoldState.PENDING), NOW, 2)
    with pytest.raises(DomainError) as refused:
        holds.check_commit(hold(HoldState.PENDING), NOW, 1)
    assert refused.value.reason == "ASSIGNEE_COUNT_MISMATCH"


def test_what_a_release_does() -> None:
    assert holds.release_resolution(hold(HoldState.PENDING), NOW) is HoldState.RELEASED
    lapsed = hold(HoldState.PENDING, timedelta(0))
    assert holds.release_resolution(lapsed, NOW) is HoldState.EXPIRED
    assert holds.release_resolution(hold(HoldState.RELEASED), NOW) is None
    assert holds.release_resolution(hold(HoldState.EXPIRED), NOW) is None
    with pytest.raises(DomainError) as refused:
        holds.release_resolution(hold(HoldState.COMMITTED), NOW)
    assert refused.value.metadata["state"] == "COMMITTED"


@pytest.mark.parametrize(
    ("state", "held_from", "pays"),
    [
        (UnitState.SPARE, None, Payer.OFFICE),
        (UnitState.ASSIGNED, None, Payer.OFFICE),
        (UnitState.REMOVAL_SCHEDULED, None, Payer.OFFICE),
        (UnitState.POOLED, None, Payer.POOL),
        (UnitState.HELD, UnitState.SPARE, Payer.OFFICE),
        (UnitState.HELD, UnitState.POOLED, Payer.POOL),
        (UnitState.TERMINATED, None, None),
    ],
)
def test_who_pays_for_a_unit(state: UnitState, held_from: UnitState | None, pays: Payer) -> None:
    assert units.payer(state, held_from) is pays
