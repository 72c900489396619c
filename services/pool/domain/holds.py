"""Two-phase allocation (docs/product.md, "Holds"): a hold lives until commit, release
or expiry, and resolves at most once.

A hold moves from PENDING to exactly one of COMMITTED, RELEASED or EXPIRED. From its
`expires_at` on it is expired: commit and release count as in time only before that
instant. The functions here decide what a commit, a release or the sweeper does with a
hold as it is under the (company, currency) lock; the repository's conditional update of
the PENDING row is the database's guarantee that no second resolution happens.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.pool.domain import errors
from services.pool.domain.model import Hold, HoldState


def hold_ttl(requested_seconds: int, default: timedelta, maximum: timedelta) -> timedelta:
    """How long a hold lasts: the default when not asked, never beyond the maximum."""
    if requested_seconds == 0:
        return default
    if requested_seconds < 0 or requested_seconds > maximum.total_seconds():
        raise errors.invalid_ttl(int(maximum.total_seconds()))
    return timedelta(seconds=requested_seconds)


def is_expired(hold: Hold, now: datetime) -> bool:
    """Whether the hold's time is up (its expiry instant belongs to the expired side)."""
    return now >= hold.expires_at


def is_due(hold: Hold, now: datetime) -> bool:
    """Whether the sweeper expires the hold now."""
    return hold.state is HoldState.PENDING and is_expired(hold, now)


def check_commit(hold: Hold, now: datetime, assignees: int) -> None:
    """A commit resolves a PENDING hold in time, with no assignees or one per unit.

    A PENDING hold past its expiry raises `HoldLapsed` (HOLD_EXPIRED: the caller expires
    it first); an expired one HOLD_EXPIRED; a committed or released one HOLD_NOT_PENDING.
    """
    if assignees and assignees != len(hold.unit_ids):
        raise errors.assignee_count(len(hold.unit_ids), assignees)
    if hold.state is HoldState.PENDING:
        if is_expired(hold, now):
            raise errors.HoldLapsed(hold)
        return
    if hold.state is HoldState.EXPIRED:
        raise errors.hold_expired(hold.hold_id)
    raise errors.hold_not_pending(hold.hold_id, hold.state)


def release_resolution(hold: Hold, now: datetime) -> HoldState | None:
    """What a release does: RELEASED in time, EXPIRED past the expiry (a release that
    meets a lapsed hold expires it), None for a hold already released or expired (the
    release succeeds and answers the hold as it is). A committed hold refuses."""
    if hold.state is HoldState.PENDING:
        return HoldState.EXPIRED if is_expired(hold, now) else HoldState.RELEASED
    if hold.state is HoldState.COMMITTED:
        raise errors.hold_not_pending(hold.hold_id, hold.state)
    return None
