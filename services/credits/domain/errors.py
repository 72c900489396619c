"""The credits service's business errors, each with its reason from the registry
(`libs/common/reasons.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from libs.common.errors import DomainError, FailedPrecondition
from libs.common.reasons import Reason


class InsufficientCredits(FailedPrecondition):
    """The office's policy is REJECT and its credits do not cover the usage;
    `limited_by` OFFICE_CAP when the office's cap kept it from shared credits."""

    def __init__(
        self,
        office_id: uuid.UUID,
        amount: int,
        covered: int,
        currency: str,
        limited_by: str | None = None,
    ) -> None:
        metadata = {
            "office_id": str(office_id),
            "amount_minor": str(amount),
            "covered_minor": str(covered),
            "shortfall_minor": str(amount - covered),
            "currency": currency,
        }
        if limited_by is not None:
            metadata["limited_by"] = limited_by
        super().__init__(
            Reason.INSUFFICIENT_CREDITS.name,
            f"office {office_id} has {covered} of the {amount} {currency} minor units this "
            "usage needs"
            + (" within its cap on the shared balance" if limited_by else "")
            + ", and its overage policy is REJECT",
            metadata,
        )


def office_not_found(office_id: uuid.UUID) -> DomainError:
    return Reason.OFFICE_NOT_FOUND.error(
        f"office {office_id} has no credit account (PutAccount first)",
        {"office_id": str(office_id)},
    )


def usage_not_found(usage_id: uuid.UUID) -> DomainError:
    return Reason.USAGE_NOT_FOUND.error(f"usage {usage_id} not found", {"usage_id": str(usage_id)})


def currency_mismatch(field: str, given: str, expected: str) -> DomainError:
    return Reason.CURRENCY_MISMATCH.error(
        f"{field}: {given} is not the office's currency {expected}",
        {"field": field, "currency": given, "office_currency": expected},
    )


def occurred_in_future(occurred_at: datetime, now: datetime) -> DomainError:
    return Reason.OCCURRED_IN_FUTURE.error(
        f"occur_time: {occurred_at.isoformat()} is in the future (now {now.isoformat()})",
        {"field": "occur_time"},
    )


def office_currency_locked(office_id: uuid.UUID, currency: str) -> DomainError:
    return Reason.OFFICE_CURRENCY_LOCKED.error(
        f"office {office_id} has ledger entries in {currency}; its currency cannot change",
        {"office_id": str(office_id), "currency": currency},
    )


def pooling_enabled(currency: str) -> DomainError:
    return Reason.CREDIT_POOLING_ENABLED.error(
        f"unified credit pooling is on for {currency}: office balances are not used; "
        "grant to the company pool instead",
        {"currency": currency},
    )


def no_primary_office() -> DomainError:
    return Reason.NO_PRIMARY_OFFICE.error(
        "the company has no primary office to hold AI agent credits"
    )


def not_primary_office(office_id: uuid.UUID) -> DomainError:
    return Reason.NOT_PRIMARY_OFFICE.error(
        f"office {office_id} is not the primary office; AI agent credits live on the "
        "primary office",
        {"office_id": str(office_id)},
    )


def office_changed(office_id: uuid.UUID) -> DomainError:
    """The office's currency changed (or it went) while its usage waited for its batch."""
    return Reason.OFFICE_CHANGED.error(
        f"office {office_id} changed while the usage waited; retry with the same request_id",
        {"office_id": str(office_id)},
    )


def account_changed() -> DomainError:
    """Where a grant goes changed between routing it and taking the lock."""
    return Reason.ACCOUNT_CHANGED.error(
        "the account changed while the request waited; retry with the same request_id"
    )
