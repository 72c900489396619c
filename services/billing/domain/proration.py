"""Prorated charges (docs/product.md, "Money, currencies and time"): integer minor units,
half-even, never floats.

charge = unit price x units x seconds left in the cycle / seconds in the cycle

Prices are already integer minor units of their currency (cents for USD, yen for JPY,
whose minor unit is the yen itself), so rounding half-even to the currency's minor unit
is rounding the exact fraction half-even to an integer. Time counts in whole seconds:
the purchase instant is taken at the start of its second, so a purchase during the
cycle's first second pays the whole cycle and one during its last second pays 1/seconds.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

from libs.common.currency import minor_unit_digits
from services.billing.domain.model import Cycle


def seconds_left(cycle: Cycle, at: datetime) -> int:
    """Whole seconds from the start of `at`'s second to the end of the cycle."""
    if not cycle.start <= at < cycle.end:
        raise ValueError(f"{at.isoformat()} is not in the cycle {cycle}")
    at_second = at.replace(microsecond=0)
    return int((cycle.end - at_second).total_seconds())


def round_half_even(value: Fraction) -> int:
    """The nearest integer; exact halves go to the even neighbour."""
    return round(value)


def prorate(unit_price: int, units: int, cycle: Cycle, at: datetime) -> int:
    """The charge, in minor units, for `units` new licenses bought at `at`."""
    if unit_price < 0 or units < 0:
        raise ValueError("prices and unit counts are never negative")
    return round_half_even(Fraction(unit_price * units * seconds_left(cycle, at), cycle.seconds))


def format_money(amount_minor: int, currency: str) -> str:
    """For people: "USD 12.34", "JPY 1000" (minor unit digits from CLDR via Babel)."""
    digits = minor_unit_digits(currency)
    sign = "-" if amount_minor < 0 else ""
    value = abs(amount_minor)
    if digits == 0:
        return f"{currency} {sign}{value}"
    whole, fraction = divmod(value, 10**digits)
    return f"{currency} {sign}{whole}.{fraction:0{digits}d}"
