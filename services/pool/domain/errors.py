"""The pool's business errors, with the reasons SPEC §7-§8 name."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from libs.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.pool.domain.model import HoldState, Receipt, UnitState


class NoLicenseAvailable(FailedPrecondition):
    """Not enough units; the receipt says what was found, the shortfall what is missing."""

    def __init__(self, receipt: Receipt) -> None:
        super().__init__(
            "NO_LICENSE_AVAILABLE",
            f"{receipt.shortfall} of {receipt.requested} {receipt.license_type} license(s) "
            "missing: purchase them or free some",
            {"shortfall": str(receipt.shortfall), "license_type": receipt.license_type},
        )
        self.receipt = receipt


def office_not_found(office_id: uuid.UUID) -> NotFound:
    return NotFound(
        "OFFICE_NOT_FOUND", f"office {office_id} not found", {"office_id": str(office_id)}
    )


def hold_not_found(hold_id: uuid.UUID) -> NotFound:
    return NotFound("HOLD_NOT_FOUND", f"hold {hold_id} not found", {"hold_id": str(hold_id)})


def receipt_not_found(receipt_id: uuid.UUID) -> NotFound:
    return NotFound(
        "RECEIPT_NOT_FOUND", f"receipt {receipt_id} not found", {"receipt_id": str(receipt_id)}
    )


def units_not_found(unit_ids: Iterable[uuid.UUID]) -> NotFound:
    ids = sorted(str(u) for u in unit_ids)
    return NotFound(
        "UNIT_NOT_FOUND",
        f"unit(s) not found: {', '.join(ids[:10])}",
        {"unit_ids": ",".join(ids[:10])},
    )


def hold_expired(hold_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "HOLD_EXPIRED", f"hold {hold_id} expired; its units are back", {"hold_id": str(hold_id)}
    )


def hold_not_pending(hold_id: uuid.UUID, state: HoldState) -> FailedPrecondition:
    return FailedPrecondition(
        "HOLD_NOT_PENDING",
        f"hold {hold_id} is already {state.value.lower()}",
        {"hold_id": str(hold_id), "state": state.value},
    )


def not_returnable(unit_id: uuid.UUID, state: UnitState) -> FailedPrecondition:
    return FailedPrecondition(
        "UNIT_NOT_RETURNABLE",
        f"unit {unit_id} is {state.value}; only ASSIGNED or SPARE units can be returned",
        {"unit_id": str(unit_id), "state": state.value},
    )


def legacy_plan_in_currency(currency: str, office_ids: Iterable[uuid.UUID]) -> FailedPrecondition:
    ids = ",".join(sorted(str(o) for o in office_ids))
    return FailedPrecondition(
        "LEGACY_PLAN_IN_CURRENCY",
        f"{currency} has offices on legacy plans; pools are for bundle plans only",
        {"currency": currency, "office_ids": ids},
    )


def pool_already_enabled(currency: str) -> FailedPrecondition:
    return FailedPrecondition(
        "POOL_ALREADY_ENABLED", f"the {currency} pool is already enabled", {"currency": currency}
    )


def pool_irreversible(currency: str) -> FailedPrecondition:
    return FailedPrecondition(
        "POOL_ENABLEMENT_IRREVERSIBLE",
        f"the {currency} pool cannot be disabled: enabling a pool is one-way",
        {"currency": currency},
    )


def pool_not_enabled(currency: str) -> FailedPrecondition:
    return FailedPrecondition(
        "POOL_NOT_ENABLED", f"the {currency} pool is not enabled", {"currency": currency}
    )


def office_has_units(office_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        "OFFICE_HAS_UNITS",
        f"office {office_id} has units; its currency cannot change",
        {"office_id": str(office_id)},
    )


def assignee_count(expected: int, got: int) -> InvalidArgument:
    return InvalidArgument(
        "ASSIGNEE_COUNT_MISMATCH",
        f"assignees: give none or exactly {expected}, got {got}",
        {"field": "assignees"},
    )


def not_enough_spare(office_id: uuid.UUID, license_type: str, quantity: int) -> FailedPrecondition:
    return FailedPrecondition(
        "NOT_ENOUGH_SPARE",
        f"office {office_id} has fewer than {quantity} spare {license_type} license(s)",
        {"office_id": str(office_id), "license_type": license_type},
    )


def unit_in_use(unit_id: uuid.UUID, state: UnitState) -> FailedPrecondition:
    return FailedPrecondition(
        "UNIT_IN_USE",
        f"unit {unit_id} is {state.value}: unassign or release it first",
        {"unit_id": str(unit_id), "state": state.value},
    )


def not_assigned(unit_id: uuid.UUID, state: UnitState) -> FailedPrecondition:
    return FailedPrecondition(
        "UNIT_NOT_ASSIGNED",
        f"unit {unit_id} is {state.value}; only ASSIGNED units can be reassigned",
        {"unit_id": str(unit_id), "state": state.value},
    )
