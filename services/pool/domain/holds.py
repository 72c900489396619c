"""Two-phase allocation (SPEC §8): a hold lives until commit, release or expiry."""

from __future__ import annotations

from datetime import timedelta

from libs.common.errors import invalid


def hold_ttl(requested_seconds: int, default: timedelta, maximum: timedelta) -> timedelta:
    """How long a hold lasts: the default when not asked, never beyond the maximum."""
    if requested_seconds == 0:
        return default
    if requested_seconds < 0 or requested_seconds > maximum.total_seconds():
        raise invalid(
            "ttl_seconds", f"must be between 1 and {int(maximum.total_seconds())}", "INVALID_TTL"
        )
    return timedelta(seconds=requested_seconds)
