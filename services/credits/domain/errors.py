"""The credits service's business errors, with the reasons SPEC §10 and §12 name."""

from __future__ import annotations

import uuid
from datetime import datetime

from libs.common.errors import FailedPrecondition, InvalidArgument, NotFound


class InsufficientCredits(FailedPrecondition):
    """The office's policy is REJECT and its credits do not cover the usage."""

    def __init__(self, office_id: uuid.UUID, amount: int, covered: int, currency: str) -> None:
        super().__init__(
            "INSUFFICIENT_CREDITS",
            f"office {office_id} has {covered} of the {amount} {currency} minor units this "
            "usage needs, and its overage policy is REJECT",
            {
                "office_id": str(office_id),
                "amount_minor": str(amount),
                "covered_minor": str(covered),
                "shortfall_minor": str(amount - covered),
                "currency": currency,
            },
        )


def office_not_found(office_id: uuid.UUID) -> NotFound:
    return NotFound(
        "OFFICE_NOT_FOUND",
        f"office {office_id} has no credit account (PutAccount first)",
        {"office_id": str(office_id)},
    )


def usage_not_found(usage_id: uuid.UUID) -> NotFound:
    return NotFound("USAGE_NOT_FOUND", f"usage {usage_id} not found", {"usage_id": str(usage_id)})


def currency_mismatch(field: str, given: str, expected: str) -> InvalidArgument:
    return InvalidArgument(
        "CURRENCY_MISMATCH",
        f"{field}: {given} is not the office's currency {expected}",
        {"field": field, "currency": given, "office_currency": expected},
    )


def occurred_in_future(occurred_at: datetime, now: datetime) -> InvalidArgument:
    return InvalidArgument(
        "OCCURRED_IN_FUTURE",
        f"occur_time: {occurred_at.isoformat()} is in the future (now {now.isoformat()})",
        {"field": "occur_time"},
    )


def office_currency_locked(office_id: uuid.UUID, currency: str) -> FailedPrecondition:
    return FailedPrecondition(
        "OFFICE_CURRENCY_LOCKED",
        f"office {office_id} has ledger entries in {currency}; its currency cannot change",
        {"office_id": str(office_id), "currency": currency},
    )


def pooling_enabled(currency: str) -> FailedPrecondition:
    return FailedPrecondition(
        "CREDIT_POOLING_ENABLED",
        f"unified credit pooling is on for {currency}: office balances are not used; "
        "grant to the company pool instead",
        {"currency": currency},
    )


def no_primary_office() -> FailedPrecondition:
    return FailedPrecondition(
        "NO_PRIMARY_OFFICE",
        "the company has no primary office to hold AI agent credits",
    )


def not_primary_office(office_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "NOT_PRIMARY_OFFICE",
        f"office {office_id} is not the primary office; AI agent credits live on the "
        "primary office",
        {"office_id": str(office_id)},
    )
