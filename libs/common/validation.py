"""Checks of request fields shared by every service; each failure names its field."""

from __future__ import annotations

import uuid

from libs.common.currency import SUPPORTED_CURRENCIES, is_supported
from libs.common.errors import InvalidArgument, invalid
from libs.common.license_catalog import LicenseType, license_type

MAX_QUANTITY = 10_000


def uuid_field(field: str, value: str) -> uuid.UUID:
    """A required UUID."""
    if not value:
        raise invalid(field, "is required", "MISSING_FIELD")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid(field, f"is not a UUID: {value[:64]!r}", "MALFORMED_ID") from None


def optional_uuid_field(field: str, value: str) -> uuid.UUID | None:
    return uuid_field(field, value) if value else None


def currency_field(field: str, value: str) -> str:
    """A required supported ISO 4217 code."""
    if not value:
        raise invalid(field, "is required", "MISSING_FIELD")
    if not is_supported(value):
        raise InvalidArgument(
            "UNSUPPORTED_CURRENCY",
            f"{field}: {value[:16]!r} is not one of {', '.join(sorted(SUPPORTED_CURRENCIES))}",
            {"field": field},
        )
    return value


def optional_currency_field(field: str, value: str) -> str | None:
    return currency_field(field, value) if value else None


def quantity_field(field: str, value: int, maximum: int = MAX_QUANTITY) -> int:
    """A count between 1 and `maximum`."""
    if value < 1 or value > maximum:
        raise invalid(field, f"must be between 1 and {maximum}, got {value}", "INVALID_QUANTITY")
    return value


def license_type_field(field: str, code: str) -> LicenseType:
    """A license type code from the catalog."""
    if not code:
        raise invalid(field, "is required", "MISSING_FIELD")
    found = license_type(code)
    if found is None:
        raise InvalidArgument(
            "UNKNOWN_LICENSE_TYPE",
            f"{field}: {code[:64]!r} is not in the catalog",
            {"field": field},
        )
    return found


def text_field(field: str, value: str, maximum: int = 128, required: bool = True) -> str:
    if required and not value:
        raise invalid(field, "is required", "MISSING_FIELD")
    if len(value) > maximum:
        raise invalid(field, f"is longer than {maximum} characters")
    return value
