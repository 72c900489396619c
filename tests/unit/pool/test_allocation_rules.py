"""The allocation rules (docs/product.md, "Pools", "Allocation"), without a database."""

from datetime import UTC, datetime, timedelta

import pytest

from libs.common.errors import InvalidArgument
from services.pool.domain import allocation
from services.pool.domain.allocation import Bystanders
from services.pool.domain.holds import hold_ttl
from services.pool.domain.model import PassOverReason, Source, UnitState

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_order_is_own_spare_then_own_returns_then_pool() -> None:
    assert allocation.sources_to_try((), pool_enabled=True, poolable=True) == (
        Source.OWN_SPARE,
        Source.OWN_RETURN_IN_GRACE,
        Source.POOL,
    )


@pytest.mark.parametrize(("enabled", "poolable"), [(False, True), (True, False), (False, False)])
def test_without_pooling_only_own_spare_is_tried(enabled: bool, poolable: bool) -> None:
    assert allocation.sources_to_try((), enabled, poolable) == (Source.OWN_SPARE,)


def test_requested_sources_keep_the_standard_order() -> None:
    requested = {Source.POOL, Source.OWN_SPARE}
    assert allocation.sources_to_try(requested, True, True) == (Source.OWN_SPARE, Source.POOL)


def test_grace_boundary_is_inclusive() -> None:
    claimable_at = allocation.claimable_at_on_return(NOW, timedelta(minutes=30))
    assert claimable_at == NOW + timedelta(minutes=30)
    assert not allocation.is_claimable(claimable_at, claimable_at - timedelta(microseconds=1))
    assert allocation.is_claimable(claimable_at, claimable_at)


def test_units_spare_at_enablement_are_claimable_at_once() -> None:
    assert allocation.is_claimable(allocation.claimable_at_on_enable(NOW), NOW)


@pytest.mark.parametrize(
    ("enabled", "poolable", "destination"),
    [
        (True, True, UnitState.POOLED),
        (True, False, UnitState.SPARE),
        (False, True, UnitState.SPARE),
        (False, False, UnitState.SPARE),
    ],
)
def test_returned_units_go_to_the_pool_only_when_pooling_applies(
    enabled: bool, poolable: bool, destination: UnitState
) -> None:
    assert allocation.return_destination(enabled, poolable) is destination


@pytest.mark.parametrize(
    ("enabled", "poolable", "reason"),
    [
        (True, True, PassOverReason.OTHER_OFFICE_SPARE),
        (False, True, PassOverReason.POOL_DISABLED),
        (True, False, PassOverReason.NON_POOLABLE),
    ],
)
def test_spare_units_of_other_offices_are_explained(
    enabled: bool, poolable: bool, reason: PassOverReason
) -> None:
    passed = allocation.passed_over(Bystanders(other_office_spare=3), enabled, poolable)
    assert [(p.reason, p.quantity) for p in passed] == [(reason, 3)]


def test_passed_over_lists_grace_holds_and_currency() -> None:
    later = NOW + timedelta(minutes=12)
    passed = allocation.passed_over(
        Bystanders(other_office_in_grace=2, earliest_claimable_at=later, held=1, other_currency=4),
        pool_enabled=True,
        poolable=True,
    )
    assert [(p.reason, p.quantity) for p in passed] == [
        (PassOverReason.IN_GRACE, 2),
        (PassOverReason.HELD, 1),
        (PassOverReason.OTHER_CURRENCY, 4),
    ]
    assert passed[0].earliest_claimable_at == later


def test_nothing_passed_over_when_nothing_exists() -> None:
    assert allocation.passed_over(Bystanders(), True, True) == ()


def test_hold_ttl_defaults_and_bounds() -> None:
    default, maximum = timedelta(minutes=5), timedelta(minutes=15)
    assert hold_ttl(0, default, maximum) == default
    assert hold_ttl(60, default, maximum) == timedelta(seconds=60)
    assert hold_ttl(900, default, maximum) == maximum
    for bad in (-1, 901):
        with pytest.raises(InvalidArgument) as caught:
            hold_ttl(bad, default, maximum)
        assert caught.value.reason == "INVALID_TTL"


def test_distribute_serves_requests_in_arrival_order() -> None:
    from services.pool.domain.allocation import Need, distribute

    handed = distribute(["u1", "u2", "u3"], [Need(2, False), Need(2, False), Need(1, False)])
    # The second request cannot be met in full: it takes nothing and leaves u3 to the third.
    assert handed == [(["u1", "u2"], 0), ([], 1), (["u3"], 0)]


def test_distribute_partial_requests_take_what_is_left() -> None:
    from services.pool.domain.allocation import Need, distribute

    handed = distribute(["u1", "u2"], [Need(1, False), Need(3, True), Need(1, False)])
    assert handed == [(["u1"], 0), (["u2"], 2), ([], 1)]


def test_by_source_groups_in_allocation_order() -> None:
    import uuid

    a, b, c = (uuid.uuid4() for _ in range(3))
    grouped = allocation.by_source([(a, Source.OWN_SPARE), (b, Source.POOL), (c, Source.OWN_SPARE)])
    assert [(t.source, t.unit_ids) for t in grouped] == [
        (Source.OWN_SPARE, (a, c)),
        (Source.POOL, (b,)),
    ]
