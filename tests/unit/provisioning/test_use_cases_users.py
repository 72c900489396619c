"""Creating, changing and deleting users on the in-memory unit of work and pool: what
the pool ends with and what provisioning keeps."""

from __future__ import annotations

import pytest

from libs.common.errors import FailedPrecondition, InvalidArgument
from licensing.provisioning.v1 import provisioning_pb2 as pb
from services.provisioning.use_cases import users
from tests.fakes.provisioning import InMemoryBilling, InMemoryPool
from tests.unit.provisioning.world import World, key


async def test_a_created_user_holds_a_committed_unit_of_its_office() -> None:
    world = World()
    world.office("hq", {"connect": 2})
    user = await world.create_user(world.create_command("hq", "Ann", "r1", email="ann@x.io"))
    assert user.display_name == "Ann"
    assert user.email == "ann@x.io"
    unit = world.pool.units[user.license_unit_id]
    assert (unit.state, unit.assignee) == ("ASSIGNED", (1, str(user.user_id)))
    assert len(world.pool.in_state("SPARE", "connect")) == 1
    assert world.pool.pending_holds() == []
    assert [s for _, s in world.steps.seen] == ["reserved", "written", "committed"]


async def test_a_retried_create_answers_the_same_user_and_takes_nothing_more() -> None:
    world = World()
    world.office("hq", {"connect": 2})
    command = world.create_command("hq", "Ann", "r1")
    first = await users.create_user(command, world.uow, world.operations)  # type: ignore[arg-type]
    calls = len(world.pool.calls)
    again = await users.create_user(command, world.uow, world.operations)  # type: ignore[arg-type]
    assert again == first
    assert len(world.pool.calls) == calls  # answered from the stored response
    assert len(world.state.users) == 1
    assert len(world.pool.in_state("SPARE", "connect")) == 1


async def test_the_same_request_id_with_another_payload_is_refused() -> None:
    world = World()
    world.office("hq", {"connect": 2})
    await world.create_user(world.create_command("hq", "Ann", "r1"))
    with pytest.raises(InvalidArgument) as caught:
        await world.create_user(world.create_command("hq", "Bob", "r1"))
    assert caught.value.reason == "REQUEST_ID_REUSED"
    assert len(world.state.users) == 1


async def test_no_unit_available_refuses_and_leaves_nothing() -> None:
    world = World()
    world.office("hq")
    with pytest.raises(FailedPrecondition) as caught:
        await world.create_user(world.create_command("hq", "Ann", "r1"))
    assert caught.value.reason == "NO_LICENSE_AVAILABLE"
    assert caught.value.metadata["shortfall"] == "1"
    assert world.state.users == {}
    assert world.state.operations == {}
    assert world.state.requests.rows == {}


async def test_the_shortfall_is_bought_when_the_request_says_so() -> None:
    pool = InMemoryPool()
    world = World(pool=pool, billing=InMemoryBilling(pool))
    world.office("hq")
    user = await world.create_user(world.create_command("hq", "Ann", "r1", purchase=True))
    assert world.pool.units[user.license_unit_id].state == "ASSIGNED"
    assert list(world.billing.purchases.values()) == [1]  # type: ignore[attr-defined]


async def test_the_response_says_where_the_license_came_from() -> None:
    pool = InMemoryPool()
    world = World(pool=pool, billing=InMemoryBilling(pool))
    world.office("hq", {"connect": 1})
    spare = await users.create_user(
        world.create_command("hq", "Ann", "r1"), world.uow, world.operations
    )  # type: ignore[arg-type]
    assert pb.CreateUserResponse.FromString(spare).license_source == pb.LICENSE_SOURCE_OWN_SPARE
    bought = await users.create_user(  # type: ignore[arg-type]
        world.create_command("hq", "Bob", "r2", purchase=True), world.uow, world.operations
    )
    assert pb.CreateUserResponse.FromString(bought).license_source == pb.LICENSE_SOURCE_PURCHASED


async def test_a_taken_e_mail_is_refused_before_the_pool_is_asked() -> None:
    world = World()
    world.office("hq", {"connect": 2})
    await world.create_user(world.create_command("hq", "Ann", "r1", email="ann@x.io"))
    calls = len(world.pool.calls)
    with pytest.raises(FailedPrecondition) as caught:
        await world.create_user(world.create_command("hq", "Ann B", "r2", email="ANN@x.io"))
    assert caught.value.reason == "EMAIL_TAKEN"
    assert len(world.pool.calls) == calls
    assert len(world.pool.in_state("SPARE", "connect")) == 1


async def test_changing_the_user_license_takes_the_new_unit_then_gives_back_the_old() -> None:
    world = World()
    world.office("hq", {"connect": 1, "sell": 1})
    user = await world.create_user(world.create_command("hq", "Ann", "r1"))
    command = users.ChangeUserLicense(
        key(world.company_id, "r2", user.user_id, "sell"), world.company_id, user.user_id, "sell"
    )
    encoded = await users.change_user_license(command, world.uow, world.operations)  # type: ignore[arg-type]
    response = pb.ChangeUserLicenseResponse.FromString(encoded)
    assert response.returned_unit_id == str(user.license_unit_id)
    changed = world.state.users[user.user_id]
    assert changed.license_type == "sell"
    assert world.pool.units[changed.license_unit_id].state == "ASSIGNED"
    assert world.pool.units[user.license_unit_id].state == "SPARE"


async def test_changing_to_the_license_the_user_has_changes_nothing() -> None:
    world = World()
    world.office("hq", {"connect": 1})
    user = await world.create_user(world.create_command("hq", "Ann", "r1"))
    calls = len(world.pool.calls)
    command = users.ChangeUserLicense(
        key(world.company_id, "r2"), world.company_id, user.user_id, "connect"
    )
    encoded = await users.change_user_license(command, world.uow, world.operations)  # type: ignore[arg-type]
    assert pb.ChangeUserLicenseResponse.FromString(encoded).returned_unit_id == ""
    assert len(world.pool.calls) == calls
    assert set(world.state.operations) == {(world.company_id, "r1")}  # no operation for r2


async def test_deleting_a_user_gives_back_every_unit_it_held() -> None:
    world = World()
    world.office("hq", {"connect": 1, "phone_system": 1, "device_ip_phone": 1})
    user = await world.create_user(world.create_command("hq", "Ann", "r1"))
    held = await world.assign(user.user_id, "phone_system", "r2")
    with_addon = await world.add_addons(uuid_of(held.license_id), ("device_ip_phone",), "r3")
    addon_id = uuid_of(with_addon.addons[0].addon_id)

    response = await world.delete_user(user.user_id, "r4")

    returned = {uuid_of(u) for u in response.returned_unit_ids}
    assert returned == {user.license_unit_id, uuid_of(held.license_id), addon_id}
    assert all(world.pool.units[u].state == "SPARE" for u in returned)
    assert world.state.users == {}
    assert world.state.licenses == {}
    assert world.state.addons == {}


async def test_a_replayed_delete_answers_as_before_without_calling_the_pool() -> None:
    world = World()
    world.office("hq", {"connect": 1})
    user = await world.create_user(world.create_command("hq", "Ann", "r1"))
    first = await world.delete_user(user.user_id, "r2")
    calls = len(world.pool.calls)
    again = await world.delete_user(user.user_id, "r2")
    assert again == first
    assert len(world.pool.calls) == calls


def uuid_of(text: str):  # type: ignore[no-untyped-def]
    import uuid

    return uuid.UUID(text)
