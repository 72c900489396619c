"""The license catalog and currency precision are data, read from maintained sources."""

from libs.common.currency import SUPPORTED_CURRENCIES, minor_unit_digits
from libs.common.license_catalog import catalog

NEVER_POOLABLE = {
    "agentic_ai",
    "recurring_credits",
    "omnichannel_session",
    "speech_ivr_session",
    "local_presence_top100",
    "local_presence_all",
    "autoreach_cm_standard",
    "autoreach_pro",
    "autoreach_cm_enterprise",
}


def test_catalog_poolable_flags_follow_the_spec() -> None:
    types = catalog()
    assert {code for code, t in types.items() if not t.poolable} == NEVER_POOLABLE
    for code in ("connect", "sell", "support", "global_unlimited_calling", "fax", "number"):
        assert types[code].poolable


def test_catalog_lists_the_reseller_bases_and_addons() -> None:
    types = catalog()
    bases = {c for c, t in types.items() if t.category == "base"}
    assert bases == {"auto_attendant", "call_group", "developer", "phone_system"}
    addons = {c for c, t in types.items() if t.category == "base_addon"}
    assert "device_ip_phone" in addons
    assert "license_call_recording_unlimited_enabled" in addons
    assert len(addons) == 9


def test_minor_units_come_from_cldr() -> None:
    assert {"USD", "JPY", "CAD", "AUD", "GBP", "NZD", "EUR"} == SUPPORTED_CURRENCIES
    assert minor_unit_digits("JPY") == 0
    assert minor_unit_digits("USD") == 2
    assert minor_unit_digits("EUR") == 2
