"""Extension keys and numbers (DIDs) of Phone System licenses."""

from __future__ import annotations

import re
import unicodedata

MAX_EXT_KEY = 64
_NUMBER = re.compile(r"\+?[0-9]{7,15}")


def ext_key_problem(value: str) -> str | None:
    """Why `value` cannot be an extension key, or None. Keys are stored verbatim (a key
    such as "=1+1" stays exactly that); only length and control characters are checked."""
    if len(value) > MAX_EXT_KEY:
        return f"is longer than {MAX_EXT_KEY} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        return "contains control characters"
    return None


def number_problem(value: str) -> str | None:
    """Why `value` is not a number (DID), or None: 7 to 15 digits, an optional leading
    "+", nothing else (spreadsheets turning numbers into 6.56789E+09 are caught here)."""
    if _NUMBER.fullmatch(value):
        return None
    if re.fullmatch(r"[0-9.]+[eE][+-]?[0-9]+", value):
        return (
            f"{value[:32]!r} looks like a number a spreadsheet shortened to scientific "
            "notation; format the column as text"
        )
    return f"{value[:32]!r} is not 7 to 15 digits with an optional leading '+'"


def number_key(value: str) -> str:
    """What makes two numbers the same: their digits ("+6567891230" == "6567891230")."""
    return value.lstrip("+")
