"""The pool's refusals, each with its reason from the registry (`libs.common.reasons`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from libs.common.errors import DomainError, FailedPrecondition
from libs.common.reasons import Reason
from services.pool.domain.model import Hold, HoldState, Receipt, UnitState


class NoLicenseAvailable(FailedPrecondition):
    """Not enough units; the receipt says what was found, the shortfall what is missing."""

    def __init__(self, receipt: Receipt) -> None:
        super().__init__(
            Reason.NO_LICENSE_AVAILABLE.name,
            f"{receipt.shortfall} of {receipt.requested} {receipt.license_type} license(s) "
            "missing: purchase them or free some",
            {"shortfall": str(receipt.shortfall), "license_type": receipt.license_type},
        )
        self.receipt = receipt


class HoldLapsed(FailedPrecondition):
    """Commit met a hold past its expiry that nobody has expired yet. It answers
    HOLD_EXPIRED; whoever catches it expires the hold first (in a transaction of its own,
    since the commit's is rolled back), so the units are back when the caller hears."""

    def __init__(self, hold: Hold) -> None:
        super().__init__(
            Reason.HOLD_EXPIRED.name, _expired_message(hold.hold_id), {"hold_id": str(hold.hold_id)}
        )
        self.hold = hold


def _expired_message(hold_id: uuid.UUID) -> str:
    return f"hold {hold_id} expired; its units are back"


def _ids(values: Iterable[uuid.UUID]) -> list[str]:
    return sorted(str(v) for v in values)


def office_not_found(office_id: uuid.UUID) -> DomainError:
    return Reason.OFFICE_NOT_FOUND.error(
        f"office {office_id} not found", {"office_id": str(office_id)}
    )


def hold_not_found(hold_id: uuid.UUID) -> DomainError:
    return Reason.HOLD_NOT_FOUND.error(f"hold {hold_id} not found", {"hold_id": str(hold_id)})


def receipt_not_found(receipt_id: uuid.UUID) -> DomainError:
    return Reason.RECEIPT_NOT_FOUND.error(
        f"receipt {receipt_id} not found", {"receipt_id": str(receipt_id)}
    )


def units_not_found(unit_ids: Iterable[uuid.UUID]) -> DomainError:
    ids = _ids(unit_ids)[:10]
    return Reason.UNIT_NOT_FOUND.error(
        f"unit(s) not found: {', '.join(ids)}", {"unit_ids": ",".join(ids)}
    )


def hold_expired(hold_id: uuid.UUID) -> DomainError:
    return Reason.HOLD_EXPIRED.error(_expired_message(hold_id), {"hold_id": str(hold_id)})


def hold_not_pending(hold_id: uuid.UUID, state: HoldState) -> DomainError:
    return Reason.HOLD_NOT_PENDING.error(
        f"hold {hold_id} is already {state.value.lower()}",
        {"hold_id": str(hold_id), "state": state.value},
    )


def _unit_state(reason: Reason, unit_id: uuid.UUID, state: UnitState, why: str) -> DomainError:
    return reason.error(
        f"unit {unit_id} is {state.value}{why}", {"unit_id": str(unit_id), "state": state.value}
    )


def not_returnable(unit_id: uuid.UUID, state: UnitState) -> DomainError:
    return _unit_state(
        Reason.UNIT_NOT_RETURNABLE,
        unit_id,
        state,
        "; only ASSIGNED or SPARE units can be returned",
    )


def unit_in_use(unit_id: uuid.UUID, state: UnitState) -> DomainError:
    return _unit_state(Reason.UNIT_IN_USE, unit_id, state, ": unassign or release it first")


def not_assigned(unit_id: uuid.UUID, state: UnitState) -> DomainError:
    return _unit_state(
        Reason.UNIT_NOT_ASSIGNED, unit_id, state, "; only ASSIGNED units can be reassigned"
    )


def legacy_plan_in_currency(currency: str, office_ids: Iterable[uuid.UUID]) -> DomainError:
    return Reason.LEGACY_PLAN_IN_CURRENCY.error(
        f"{currency} has offices on legacy plans; pools are for bundle plans only",
        {"currency": currency, "office_ids": ",".join(_ids(office_ids))},
    )


def pool_already_enabled(currency: str) -> DomainError:
    return Reason.POOL_ALREADY_ENABLED.error(
        f"the {currency} pool is already enabled", {"currency": currency}
    )


def pool_irreversible(currency: str) -> DomainError:
    return Reason.POOL_ENABLEMENT_IRREVERSIBLE.error(
        f"the {currency} pool cannot be disabled: enabling a pool is one-way",
        {"currency": currency},
    )


def pool_not_enabled(currency: str) -> DomainError:
    return Reason.POOL_NOT_ENABLED.error(
        f"the {currency} pool is not enabled", {"currency": currency}
    )


def office_has_units(office_id: uuid.UUID) -> DomainError:
    return Reason.OFFICE_HAS_UNITS.error(
        f"office {office_id} has units; its currency cannot change",
        {"office_id": str(office_id)},
    )


def assignee_count(expected: int, got: int) -> DomainError:
    return Reason.ASSIGNEE_COUNT_MISMATCH.error(
        f"assignees: give none or exactly {expected}, got {got}", {"field": "assignees"}
    )


def duplicate_assignee() -> DomainError:
    return Reason.DUPLICATE_ASSIGNEE.error(
        "assignees: each unit needs its own assignee", {"field": "assignees"}
    )


def invalid_ttl(maximum_seconds: int) -> DomainError:
    return Reason.INVALID_TTL.error(
        f"ttl_seconds: must be between 1 and {maximum_seconds}", {"field": "ttl_seconds"}
    )


def not_enough_spare(office_id: uuid.UUID, license_type: str, quantity: int) -> DomainError:
    return Reason.NOT_ENOUGH_SPARE.error(
        f"office {office_id} has fewer than {quantity} spare {license_type} license(s)",
        {"office_id": str(office_id), "license_type": license_type},
    )


def office_changed() -> DomainError:
    return Reason.OFFICE_CHANGED.error("the office changed; retry")


def concurrent_change() -> DomainError:
    return Reason.CONCURRENT_CHANGE.error("units changed meanwhile; retry")


def not_run() -> DomainError:
    return Reason.NOT_RUN.error("not run")
