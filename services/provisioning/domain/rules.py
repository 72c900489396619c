"""Provisioning's rules on users and licenses: what goes back to the pool when a user or
a license goes, which add-ons a request may add or remove, who a license may move to,
and what may be terminated (docs/product.md, "Provisioning")."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from libs.common.errors import DomainError
from libs.common.license_catalog import license_type
from services.provisioning.domain import catalog, errors
from services.provisioning.domain.model import License, User
from services.provisioning.domain.peers import PoolUnit


def units_of_license(held: License) -> list[uuid.UUID]:
    """A license's units, add-ons first: they all go back to the pool with it."""
    return [a.addon_id for a in held.addons] + [held.license_id]


def units_of_user(user: User, licenses: Iterable[License]) -> list[uuid.UUID]:
    """A deleted user's units: the user license, then every base license and add-on."""
    units = [user.license_unit_id]
    for held in licenses:
        units += units_of_license(held)
    return units


def addons_to_add(held: License, codes: Sequence[str]) -> None:
    """ADDON_ALREADY_ATTACHED if the license has one of the add-ons already."""
    for code in codes:
        if held.addon(code) is not None:
            raise errors.addon_present(code)


def addons_to_remove(held: License, codes: Sequence[str]) -> list[uuid.UUID]:
    """The units of the add-ons to remove; ADDON_NOT_ATTACHED for one the license lacks."""
    units = []
    for code in codes:
        addon = held.addon(code)
        if addon is None:
            raise errors.addon_absent(code)
        units.append(addon.addon_id)
    return units


def moves(held: License, user: User, has_type_already: bool) -> bool:
    """Whether reassigning `held` to `user` changes anything. A license moves only within
    its office (USER_IN_OTHER_OFFICE), to a user without one of its type
    (USER_ALREADY_HAS_LICENSE)."""
    if held.user_id == user.user_id:
        return False
    if user.office_id != held.office_id:
        raise errors.other_office(user.user_id, held.office_id)
    if has_type_already:
        raise errors.already_has_license(user.user_id, held.license_type)
    return True


def extension_target(held: License) -> None:
    """Extensions and numbers exist on Phone System licenses only (NOT_PHONE_SYSTEM)."""
    if held.license_type != catalog.PHONE_SYSTEM:
        raise errors.not_phone_system(held.license_id, held.license_type)


def search_type(code: str | None, ext_prefix: str | None, number: str | None) -> str | None:
    """A search by extension or number looks at Phone System licenses only."""
    if (ext_prefix or number) and code is None:
        return catalog.PHONE_SYSTEM
    return code


def termination_refusal(
    subscription_id: uuid.UUID, held: License | None, addon_of: uuid.UUID | None
) -> DomainError | None:
    """A license or add-on held here is in use (LICENSE_IN_USE): unassign it first."""
    if held is not None:
        return errors.in_use(subscription_id, f"assigned to user {held.user_id}")
    if addon_of is not None:
        return errors.in_use(subscription_id, f"an add-on of license {addon_of}")
    return None


def terminable(unit: PoolUnit) -> None:
    """Only base licenses and add-ons are terminated, and only when the pool has them
    unassigned and not held (LICENSE_IN_USE, NOT_A_PORTAL_LICENSE)."""
    found = license_type(unit.license_type)
    if found is None or found.category not in (catalog.BASE, catalog.BASE_ADDON):
        raise errors.not_terminable(unit.unit_id, unit.license_type)
    if unit.in_use:
        raise errors.in_use(unit.unit_id, unit.state.lower())
