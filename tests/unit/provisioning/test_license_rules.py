"""Provisioning's rules on users and licenses (`domain/rules.py`) and what the recovery
does at each step of a pool operation, without any storage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from libs.common.errors import DomainError
from services.provisioning.domain import rules
from services.provisioning.domain.model import Addon, License, User
from services.provisioning.domain.peers import PoolUnit
from services.provisioning.domain.pool_operation import Recovery, Step

NOW = datetime(2026, 1, 15, tzinfo=UTC)
COMPANY, HQ, BRANCH = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def user(office: uuid.UUID = HQ) -> User:
    return User(uuid.uuid4(), COMPANY, office, "Ann", None, "connect", uuid.uuid4(), NOW, NOW)


def phone(owner: User, *addons: str) -> License:
    return License(
        uuid.uuid4(),
        COMPANY,
        owner.office_id,
        "phone_system",
        owner.user_id,
        None,
        None,
        tuple(Addon(uuid.uuid4(), code, NOW) for code in addons),
        NOW,
        NOW,
    )


def reason(error: BaseException) -> str:
    assert isinstance(error, DomainError)
    return error.reason


def test_a_deleted_user_gives_back_its_user_license_licenses_and_add_ons() -> None:
    ann = user()
    held = phone(ann, "device_ip_phone", "team_chat")
    units = rules.units_of_user(ann, [held])
    assert units[0] == ann.license_unit_id
    assert set(units[1:]) == {held.license_id, *(a.addon_id for a in held.addons)}
    assert rules.units_of_license(held)[-1] == held.license_id  # add-ons go first


def test_add_ons_are_added_once_and_removed_only_if_attached() -> None:
    held = phone(user(), "device_ip_phone")
    with pytest.raises(DomainError) as present:
        rules.addons_to_add(held, ("team_chat", "device_ip_phone"))
    assert reason(present.value) == "ADDON_ALREADY_ATTACHED"
    with pytest.raises(DomainError) as absent:
        rules.addons_to_remove(held, ("team_chat",))
    assert reason(absent.value) == "ADDON_NOT_ATTACHED"
    assert rules.addons_to_remove(held, ("device_ip_phone",)) == [held.addons[0].addon_id]


def test_a_license_moves_within_its_office_to_a_user_without_one_of_its_type() -> None:
    ann, bob = user(), user()
    held = phone(ann)
    assert rules.moves(held, ann, has_type_already=True) is False  # already hers
    assert rules.moves(held, bob, has_type_already=False) is True
    with pytest.raises(DomainError) as other:
        rules.moves(held, user(BRANCH), has_type_already=False)
    assert reason(other.value) == "USER_IN_OTHER_OFFICE"
    with pytest.raises(DomainError) as has:
        rules.moves(held, bob, has_type_already=True)
    assert reason(has.value) == "USER_ALREADY_HAS_LICENSE"


def test_only_unused_base_licenses_and_add_ons_are_terminated() -> None:
    ann = user()
    held = phone(ann)
    refusal = rules.termination_refusal(held.license_id, held, None)
    assert refusal is not None
    assert reason(refusal) == "LICENSE_IN_USE"
    addon = uuid.uuid4()
    refusal = rules.termination_refusal(addon, None, held.license_id)
    assert refusal is not None
    assert reason(refusal) == "LICENSE_IN_USE"
    assert rules.termination_refusal(uuid.uuid4(), None, None) is None

    def unit(code: str, state: str) -> PoolUnit:
        return PoolUnit(uuid.uuid4(), code, HQ, state, "")

    rules.terminable(unit("phone_system", "SPARE"))
    rules.terminable(unit("device_ip_phone", "SPARE"))
    for code, state, expected in (
        ("connect", "SPARE", "NOT_A_PORTAL_LICENSE"),
        ("phone_system", "ASSIGNED", "LICENSE_IN_USE"),
        ("phone_system", "HELD", "LICENSE_IN_USE"),
    ):
        with pytest.raises(DomainError) as caught:
            rules.terminable(unit(code, state))
        assert reason(caught.value) == expected


def test_searching_by_extension_or_number_looks_at_phone_systems() -> None:
    assert rules.search_type(None, "10", None) == "phone_system"
    assert rules.search_type(None, None, "+15551234") == "phone_system"
    assert rules.search_type(None, None, None) is None
    assert rules.search_type("call_group", None, None) == "call_group"


def test_the_recovery_undoes_what_was_not_written_and_finishes_what_was() -> None:
    assert Step.RESERVING.on_recovery is Recovery.UNDO
    assert Step.WRITTEN.on_recovery is Recovery.FINISH
