"""The billing service's business errors (reasons from `libs/common/reasons.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from libs.common.errors import (
    Aborted,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)


class PricingMismatch(FailedPrecondition):
    """Active plans of a pooled currency disagree on the purchased type's price."""

    def __init__(
        self, company_id: uuid.UUID, currency: str, mismatches: tuple[object, ...]
    ) -> None:
        super().__init__(
            "PRICING_MISMATCH",
            f"the active {currency} plans do not share identical prices; with pooling on, "
            "purchases need matching price books",
            {"currency": currency},
        )
        self.company_id = company_id
        self.currency = currency
        self.mismatches = mismatches


def plan_not_found(plan_id: uuid.UUID) -> NotFound:
    return NotFound("PLAN_NOT_FOUND", f"plan {plan_id} not found", {"plan_id": str(plan_id)})


def office_not_found(office_id: uuid.UUID) -> NotFound:
    """The office belongs to another company (to the caller it does not exist)."""
    return NotFound(
        "OFFICE_NOT_FOUND", f"office {office_id} not found", {"office_id": str(office_id)}
    )


def no_active_plan(office_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "NO_ACTIVE_PLAN",
        f"office {office_id} has no active plan",
        {"office_id": str(office_id)},
    )


def office_has_active_plan(office_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "OFFICE_HAS_ACTIVE_PLAN",
        f"office {office_id} already has an active plan; update it or deactivate it first",
        {"office_id": str(office_id)},
    )


def type_not_priced(plan_id: uuid.UUID, license_type: str) -> FailedPrecondition:
    return FailedPrecondition(
        "LICENSE_TYPE_NOT_PRICED",
        f"plan {plan_id} has no price for {license_type}",
        {"plan_id": str(plan_id), "license_type": license_type},
    )


def contracted_plan(plan_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "CONTRACTED_PLAN",
        "licenses of a contracted plan cannot be removed here: contact your account team",
        {"plan_id": str(plan_id)},
    )


def purchase_not_found(purchase_id: uuid.UUID) -> NotFound:
    return NotFound(
        "PURCHASE_NOT_FOUND",
        f"purchase {purchase_id} not found",
        {"purchase_id": str(purchase_id)},
    )


def quote_not_found(quote_id: uuid.UUID) -> NotFound:
    return NotFound("QUOTE_NOT_FOUND", f"quote {quote_id} not found", {"quote_id": str(quote_id)})


def quote_expired(quote_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "QUOTE_EXPIRED",
        f"quote {quote_id} expired; ask for a new quote",
        {"quote_id": str(quote_id)},
    )


def quote_changed(quote_id: uuid.UUID, what: str) -> FailedPrecondition:
    return FailedPrecondition(
        "QUOTE_CHANGED",
        f"quote {quote_id} no longer holds: {what}; ask for a new quote",
        {"quote_id": str(quote_id)},
    )


def quote_used(quote_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "QUOTE_ALREADY_USED",
        f"quote {quote_id} was already purchased",
        {"quote_id": str(quote_id)},
    )


def invoice_not_found(invoice_id: uuid.UUID) -> NotFound:
    return NotFound(
        "INVOICE_NOT_FOUND", f"invoice {invoice_id} not found", {"invoice_id": str(invoice_id)}
    )


def period_not_started(period: str) -> FailedPrecondition:
    return FailedPrecondition(
        "PERIOD_NOT_STARTED", f"period {period} has not started yet", {"period": period}
    )


def period_not_ended(period: str, ends_at: datetime) -> FailedPrecondition:
    return FailedPrecondition(
        "PERIOD_NOT_ENDED",
        f"period {period} has not ended for every plan of the company; close it from"
        f" {ends_at.isoformat()}",
        {"period": period, "end_time": ends_at.isoformat()},
    )


def quote_mismatch(field: str, quoted: object) -> InvalidArgument:
    return InvalidArgument(
        "QUOTE_MISMATCH", f"{field}: differs from the quote's ({quoted})", {"field": field}
    )


def purchases_in_progress(period: str, pending: int) -> Aborted:
    return Aborted(
        "PURCHASES_IN_PROGRESS",
        f"{pending} purchase(s) of {period} are under way; retry shortly",
        {"period": period},
    )


def purchase_in_progress(purchase_id: uuid.UUID) -> Aborted:
    return Aborted(
        "PURCHASE_IN_PROGRESS",
        "this purchase is still under way; retry with the same request_id",
        {"purchase_id": str(purchase_id)},
    )


def driven_elsewhere() -> Aborted:
    """The recovery found the purchase leased to a live driver: that one carries it."""
    return Aborted("PURCHASE_IN_PROGRESS", "another driver holds the purchase")


def purchase_interrupted() -> Aborted:
    return Aborted(
        "PURCHASE_INTERRUPTED",
        "the purchase was interrupted and undone; nothing was charged. Retry it",
    )


def pool_down() -> Unavailable:
    return Unavailable(
        "POOL_UNAVAILABLE",
        "the pool service is unavailable; nothing was charged. Retry with the same request_id",
    )


_CLASSES: dict[str, type[DomainError]] = {
    cls.kind.value: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Aborted,
        Unavailable,
        ResourceExhausted,
        DeadlineExceeded,
    )
}


def purchase_failed(
    purchase_id: uuid.UUID, kind: str | None, reason: str | None, message: str | None
) -> DomainError:
    """The outcome of a FAILED purchase, as recorded (for a retry of it)."""
    cls = _CLASSES.get(kind or "", Aborted)
    return cls(
        reason or "PURCHASE_FAILED",
        message or "the purchase failed; nothing was charged",
        {"purchase_id": str(purchase_id)},
    )
