"""Pricing parity: in a pooled currency every active plan must charge the same
for a license type, because a license moves between offices without being re-priced."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.billing.domain import errors
from services.billing.domain.model import Plan


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Active plans of one currency that disagree on one type's price (None: unpriced)."""

    license_type: str
    prices: tuple[tuple[uuid.UUID, uuid.UUID, int | None], ...]  # plan, office, price


def mismatches(plans: Sequence[Plan], license_types: Iterable[str] | None = None) -> list[Mismatch]:
    """Per license type (all priced types, or the given ones), the active plans whose
    prices differ. A plan without a price for the type differs from one with a price."""
    active = sorted((p for p in plans if p.active), key=oldest_first)
    types = (
        sorted({t for p in active for t in p.prices})
        if license_types is None
        else sorted(set(license_types))
    )
    found = []
    for license_type in types:
        prices = tuple((p.plan_id, p.office_id, p.price_of(license_type)) for p in active)
        if len({price for _, _, price in prices}) > 1:
            found.append(Mismatch(license_type, prices))
    return found


def oldest_first(plan: Plan) -> tuple[object, ...]:
    """Oldest first: earliest start, ties broken by the smallest id."""
    return (plan.start_at, str(plan.plan_id))


def oldest_active(plans: Iterable[Plan], currency: str) -> Plan | None:
    """The oldest active plan of a currency: it pays for the units resting in the pool."""
    candidates = [p for p in plans if p.active and p.currency == currency]
    return min(candidates, key=oldest_first) if candidates else None


def check(company_id: uuid.UUID, currency: str, plans: Sequence[Plan], license_type: str) -> None:
    """PRICING_MISMATCH if the active plans of a pooled currency disagree on the price of
    the type being bought (call it only when the currency is pooled)."""
    found = mismatches(plans, [license_type])
    if found:
        raise errors.PricingMismatch(company_id, currency, tuple(found))
