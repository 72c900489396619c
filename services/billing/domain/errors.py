"""The billing service's business errors, with the reasons SPEC §9 names."""

from __future__ import annotations

import uuid

from libs.common.errors import FailedPrecondition, NotFound


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
