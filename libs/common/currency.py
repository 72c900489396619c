"""Billing currencies and their minor units, taken from CLDR via Babel.

The rules are in docs/product.md, "Money, currencies and time".
"""

from __future__ import annotations

from babel.numbers import get_currency_precision

SUPPORTED_CURRENCIES: frozenset[str] = frozenset({"USD", "JPY", "CAD", "AUD", "GBP", "NZD", "EUR"})


def is_supported(code: str) -> bool:
    return code in SUPPORTED_CURRENCIES


def minor_unit_digits(code: str) -> int:
    """Digits after the decimal point (USD 2, JPY 0), from CLDR."""
    return int(get_currency_precision(code))
