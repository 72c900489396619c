"""Provisioning's business errors, with their registered reasons (docs/product.md,
"Provisioning")."""

from __future__ import annotations

import uuid

from libs.common.errors import DomainError, InvalidArgument
from libs.common.reasons import Reason
from services.provisioning.domain.model import RowIssue


def user_not_found(user_id: uuid.UUID) -> DomainError:
    return Reason.USER_NOT_FOUND.error(f"user {user_id} not found", {"user_id": str(user_id)})


def license_not_found(license_id: uuid.UUID) -> DomainError:
    return Reason.LICENSE_NOT_FOUND.error(
        f"license {license_id} not found", {"license_id": str(license_id)}
    )


def import_not_found(import_id: str) -> DomainError:
    return Reason.IMPORT_NOT_FOUND.error(
        f"import {import_id!r} not found", {"import_id": import_id}
    )


def email_taken(email: str) -> DomainError:
    return Reason.EMAIL_TAKEN.error(
        f"another user of the company has the e-mail {email!r}", {"email": email}
    )


def unit_held_by_a_user(unit_id: uuid.UUID | None) -> DomainError:
    return Reason.UNIT_IN_USE.error(
        f"the pool handed out unit {unit_id}, which a user of the company still holds (it was"
        " given back to the pool without this service); nothing was changed",
        {"unit_id": str(unit_id)},
    )


def already_has_license(user_id: uuid.UUID, code: str) -> DomainError:
    return Reason.USER_ALREADY_HAS_LICENSE.error(
        f"user {user_id} already has a {code} license",
        {"user_id": str(user_id), "license_type": code},
    )


def other_office(user_id: uuid.UUID, office_id: uuid.UUID) -> DomainError:
    return Reason.USER_IN_OTHER_OFFICE.error(
        f"user {user_id} belongs to another office than the license ({office_id})",
        {"user_id": str(user_id), "office_id": str(office_id)},
    )


def not_phone_system(license_id: uuid.UUID, code: str) -> DomainError:
    return Reason.NOT_PHONE_SYSTEM.error(
        f"license {license_id} is {code}; extensions and numbers are for phone_system only",
        {"license_id": str(license_id), "license_type": code},
    )


def addon_present(code: str) -> DomainError:
    return Reason.ADDON_ALREADY_ATTACHED.error(
        f"the license already has {code}", {"license_type": code}
    )


def addon_absent(code: str) -> DomainError:
    return Reason.ADDON_NOT_ATTACHED.error(
        f"the license has no {code} add-on", {"license_type": code}
    )


def ext_key_taken(ext_key: str) -> DomainError:
    return Reason.EXT_KEY_TAKEN.error(
        f"extension {ext_key[:64]!r} belongs to another license",
        {"ext_key": ext_key[:64]},
    )


def number_taken(number: str) -> DomainError:
    return Reason.NUMBER_TAKEN.error(
        f"number {number!r} belongs to another license", {"number": number}
    )


def in_use(subscription_id: uuid.UUID, why: str) -> DomainError:
    return Reason.LICENSE_IN_USE.error(
        f"license {subscription_id} is in use ({why}); unassign it first",
        {"subscription_id": str(subscription_id)},
    )


def not_terminable(subscription_id: uuid.UUID, code: str) -> DomainError:
    return Reason.NOT_A_PORTAL_LICENSE.error(
        f"subscription {subscription_id} is a {code} license; only base licenses and their "
        "add-ons are terminated here",
        {"subscription_id": str(subscription_id), "license_type": code},
    )


def duplicate_in_request(field: str, code: str) -> DomainError:
    return Reason.DUPLICATE_ADDON.error(f"{field}: {code!r} is listed twice", {"field": field})


def import_id_reused(import_id: str) -> DomainError:
    return Reason.IMPORT_ID_REUSED.error(
        f"import {import_id!r} was started with another file or office; use a new import id",
        {"import_id": import_id},
    )


class ImportRejected(InvalidArgument):
    """An import whose file has problems: nothing was applied; `issues` lists them."""

    def __init__(self, issues: tuple[RowIssue, ...]) -> None:
        first = issues[0]
        where = f"row {first.row}" + (f", {first.column}" if first.column else "")
        super().__init__(
            "IMPORT_HAS_ERRORS",
            f"the file has {len(issues)} problem(s), nothing was applied; first: {where}: "
            f"{first.message} ({first.reason})",
            {"error_count": str(len(issues)), "first_row": str(first.row)},
        )
        self.issues = issues


def license_changed() -> DomainError:
    return Reason.CONCURRENT_CHANGE.error("the license changed meanwhile; retry")


def user_changed() -> DomainError:
    return Reason.CONCURRENT_CHANGE.error("the user changed meanwhile; retry")


class ImportConflict(Exception):
    """The final write of an import was refused by a constraint of the account (the
    constraint's name says which): the account changed while the import ran."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint
