"""The license catalog, loaded from `license_catalog.toml` (data, not `if`s).

What each type means is in docs/product.md, "License types".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class LicenseType:
    """One license type."""

    code: str
    name: str
    category: str
    poolable: bool


@cache
def catalog() -> dict[str, LicenseType]:
    """Every license type by code, in catalog order."""
    text = resources.files(__package__).joinpath("license_catalog.toml").read_text("utf-8")
    entries = tomllib.loads(text)["license"]
    return {entry["code"]: LicenseType(**entry) for entry in entries}


def license_type(code: str) -> LicenseType | None:
    """The license type with this code, or None."""
    return catalog().get(code)
