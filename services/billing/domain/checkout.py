"""Checkout (docs/product.md, "Checkout and purchases"): restore scheduled removals first,
then the pool, then new units."""

from __future__ import annotations

from libs.common.license_catalog import license_type as catalog_type
from services.billing.domain.model import Availability, PlanKind, Split


def pool_takes_part(pool_enabled: bool, plan_kind: PlanKind, license_type: str) -> bool:
    """Whether a checkout may take units from the pool: the currency is pooled, the plan
    is a bundle (only bundles take part in pools) and the type is poolable."""
    found = catalog_type(license_type)
    return pool_enabled and plan_kind is PlanKind.BUNDLE and found is not None and found.poolable


def split(quantity: int, scheduled: int, pool_available: int) -> Split:
    """How `quantity` licenses are found: restored first, then the pool, then new."""
    restored = min(quantity, max(scheduled, 0))
    from_pool = min(quantity - restored, max(pool_available, 0))
    return Split(restored, from_pool, quantity - restored - from_pool)


def own_returns(found: Split, availability: Availability) -> int:
    """Of the units from the pool, how many are the office's own returns still in grace:
    the pool gives those first, then units other offices returned."""
    return min(found.from_pool, availability.own_returns_in_grace)


def message(found: Split) -> str:
    """What the checkout says, e.g. "2 from pool, 1 restored, 3 new"."""
    parts = [f"{found.from_pool} from pool"]
    if found.restored:
        parts.append(f"{found.restored} restored")
    parts.append(f"{found.new} new")
    return ", ".join(parts)
