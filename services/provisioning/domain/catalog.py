"""Which catalog types the reseller portal works with (docs/product.md, "License types"),
read from the catalog."""

from __future__ import annotations

import re

from libs.common.errors import InvalidArgument
from libs.common.license_catalog import LicenseType, catalog, license_type
from libs.common.reasons import Reason

USER = "user"
BASE = "base"
BASE_ADDON = "base_addon"
PHONE_SYSTEM = "phone_system"


# The reason for a type that is in the catalog but of another category than asked for.
_WRONG_CATEGORY = {
    USER: Reason.NOT_A_USER_LICENSE,
    BASE: Reason.NOT_A_BASE_LICENSE,
    BASE_ADDON: Reason.NOT_AN_ADDON,
}


def of_category(category: str) -> list[LicenseType]:
    return [t for t in catalog().values() if t.category == category]


def _require(field: str, code: str, category: str, what: str) -> LicenseType:
    if not code:
        raise InvalidArgument("MISSING_FIELD", f"{field}: is required", {"field": field})
    found = license_type(code)
    if found is None or found.category != category:
        codes = ", ".join(t.code for t in of_category(category))
        reason = "UNKNOWN_LICENSE_TYPE" if found is None else _WRONG_CATEGORY[category].name
        kind = "" if found is None else f" (it is a {found.category} license type)"
        raise InvalidArgument(
            reason,
            f"{field}: {code[:64]!r} is not {what}{kind}; one of: {codes}",
            {"field": field},
        )
    return found


def user_license_type(field: str, code: str) -> LicenseType:
    """A user license type (connect, sell, support, ...)."""
    return _require(field, code, USER, "a user license type")


def base_license_type(field: str, code: str) -> LicenseType:
    """A reseller-portal base license type (auto_attendant, ..., phone_system)."""
    return _require(field, code, BASE, "a base license type")


def addon_type(field: str, code: str) -> LicenseType:
    """An add-on of the base licenses (call_recording, device_ip_phone, ...)."""
    return _require(field, code, BASE_ADDON, "an add-on license type")


def _folded(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.casefold())


def addon_by_cell(cell: str) -> LicenseType | None:
    """The add-on a CSV cell names: its code or its display name, ignoring case, spaces
    and punctuation ("device_ip_phone", "IP Phone", "ip-phone")."""
    wanted = _folded(cell)
    if not wanted:
        return None
    for t in of_category(BASE_ADDON):
        if wanted in (_folded(t.code), _folded(t.name)):
            return t
    return None
