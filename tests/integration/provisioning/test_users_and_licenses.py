"""Users, base licenses, add-ons, extensions, search and termination against real
PostgreSQL, with the pool service in the same process."""

from __future__ import annotations

import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pool_pb
from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support.pool import details_of, reason_of, rid
from tests.support.provisioning import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def unit_state(tenant: Tenant, unit_id: str) -> int:
    response = await tenant.platform.pool.GetUnit(
        pool_pb.GetUnitRequest(company_id=tenant.company_id, unit_id=unit_id)
    )
    return response.unit.state


async def test_catalog_lists_bases_and_addons(tenant: Tenant) -> None:
    bases = await tenant.stub.ListLicenseTypes(pb.ListLicenseTypesRequest(category="base"))
    assert [t.code for t in bases.license_types] == [
        "auto_attendant",
        "call_group",
        "developer",
        "phone_system",
    ]
    page = await tenant.stub.ListLicenseTypes(pb.ListLicenseTypesRequest(page_size=2))
    assert len(page.license_types) == 2
    assert page.next_page_token


async def test_create_user_takes_a_unit_and_fails_without_one(tenant: Tenant) -> None:
    await tenant.company.office("hq", "USD")
    (unit,) = await tenant.company.add("hq", "connect", 1)
    user = await tenant.user("hq", "John", email="john@example.com")
    assert user.license_unit_id == unit
    assert await unit_state(tenant, unit) == pool_pb.UNIT_STATE_ASSIGNED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.user("hq", "Alice")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "NO_LICENSE_AVAILABLE"
    # The pool's receipt reaches the caller: what was missing.
    (receipt,) = details_of(caught.value, pool_pb.Receipt)
    assert (receipt.requested, receipt.shortfall) == (1, 1)
    assert dict(caught.value.trailing_metadata() or ()) is not None


async def test_a_unit_given_back_behind_provisionings_back_is_refused_not_reassigned(
    tenant: Tenant,
) -> None:
    """A user's unit returned to the pool directly (not by DeleteUser) looks free to the
    pool; the next user it is handed to is refused precisely, and nothing is created."""
    await tenant.company.office("hq", "USD")
    (unit,) = await tenant.company.add("hq", "connect", 1)
    holder = await tenant.user("hq", "John")
    assert holder.license_unit_id == unit
    await tenant.company.give_back([unit])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.user("hq", "Alice")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "UNIT_IN_USE"
    listed = await tenant.stub.ListUsers(pb.ListUsersRequest(company_id=tenant.company_id))
    assert [u.display_name for u in listed.users] == ["John"]
    # Its hold was released: the unit is where the direct return put it, not held.
    assert await unit_state(tenant, unit) == pool_pb.UNIT_STATE_SPARE


async def test_create_user_is_idempotent_by_request_id(tenant: Tenant) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "sell", 2)
    request = pb.CreateUserRequest(
        request_id=rid(),
        company_id=tenant.company_id,
        office_id=tenant.company.offices["hq"],
        display_name="Bob",
        license_type="sell",
    )
    first = await tenant.stub.CreateUser(request)
    again = await tenant.stub.CreateUser(request)
    assert first == again
    listed = await tenant.stub.ListUsers(pb.ListUsersRequest(company_id=tenant.company_id))
    assert len(listed.users) == 1
    request.display_name = "Robert"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.CreateUser(request)
    assert reason_of(caught.value) == "REQUEST_ID_REUSED"


async def test_delete_user_and_change_license_return_units(tenant: Tenant) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "connect", 1)
    await tenant.company.add("hq", "support", 1)
    user = await tenant.user("hq", "Carol")
    changed = await tenant.stub.ChangeUserLicense(
        pb.ChangeUserLicenseRequest(
            request_id=rid(), company_id=tenant.company_id, user_id=user.user_id,
            license_type="support",
        )
    )  # fmt: skip
    assert changed.user.license_type == "support"
    assert changed.returned_unit_id == user.license_unit_id
    assert await unit_state(tenant, user.license_unit_id) == pool_pb.UNIT_STATE_SPARE
    deleted = await tenant.stub.DeleteUser(
        pb.DeleteUserRequest(request_id=rid(), company_id=tenant.company_id, user_id=user.user_id)
    )
    assert list(deleted.returned_unit_ids) == [changed.user.license_unit_id]
    assert await unit_state(tenant, changed.user.license_unit_id) == pool_pb.UNIT_STATE_SPARE
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.GetUser(
            pb.GetUserRequest(company_id=tenant.company_id, user_id=user.user_id)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_create_and_delete_say_where_the_license_came_from_and_went(
    tenant: Tenant,
) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.office("branch", "USD")
    await tenant.company.add("hq", "connect", 1)
    await tenant.company.enable("USD")  # hq's spare unit enters the pool
    request = pb.CreateUserRequest(
        request_id=rid(),
        company_id=tenant.company_id,
        office_id=tenant.company.offices["branch"],
        display_name="Dora",
        license_type="connect",
    )
    created = await tenant.stub.CreateUser(request)
    assert created.license_source == pb.LICENSE_SOURCE_POOL
    deleted = await tenant.stub.DeleteUser(
        pb.DeleteUserRequest(
            request_id=rid(), company_id=tenant.company_id, user_id=created.user.user_id
        )
    )
    (went,) = deleted.returned_units
    assert went.unit_id == created.user.license_unit_id
    assert (went.state, went.currency, went.license_type) == ("POOLED", "USD", "connect")
    assert went.claimable_time.seconds > 0  # others may claim it once its grace ends
    again = await tenant.stub.CreateUser(
        pb.CreateUserRequest(
            request_id=rid(),
            company_id=tenant.company_id,
            office_id=tenant.company.offices["branch"],
            display_name="Dora",
            license_type="connect",
        )
    )
    assert again.license_source == pb.LICENSE_SOURCE_OWN_RETURN_IN_GRACE

    request.request_id = rid()
    request.license_type = "phone_system"  # in the catalog, but a base license
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.CreateUser(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "NOT_A_USER_LICENSE"
    request.license_type = "no_such_type"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.CreateUser(request)
    assert reason_of(caught.value) == "UNKNOWN_LICENSE_TYPE"


async def test_base_license_assign_reassign_addons_extension_unassign(tenant: Tenant) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "connect", 2)
    await tenant.company.add("hq", "phone_system", 1)
    await tenant.company.add("hq", "device_ip_phone", 1)
    await tenant.company.add("hq", "call_recording", 1)
    john, alice = await tenant.user("hq", "John"), await tenant.user("hq", "Alice")
    held = await tenant.assign(john)
    assert held.user_id == john.user_id
    assert held.license_type == "phone_system"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.assign(john)
    assert reason_of(caught.value) == "USER_ALREADY_HAS_LICENSE"

    added = await tenant.stub.AddAddons(
        pb.AddAddonsRequest(
            request_id=rid(), company_id=tenant.company_id, license_id=held.license_id,
            addon_types=["device_ip_phone", "call_recording"],
        )
    )  # fmt: skip
    assert sorted(a.license_type for a in added.license.addons) == [
        "call_recording",
        "device_ip_phone",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # none left: nothing taken
        await tenant.stub.AddAddons(
            pb.AddAddonsRequest(
                request_id=rid(), company_id=tenant.company_id, license_id=held.license_id,
                addon_types=["team_chat"],
            )
        )  # fmt: skip
    assert reason_of(caught.value) == "NO_LICENSE_AVAILABLE"

    extension = await tenant.stub.SetExtension(
        pb.SetExtensionRequest(
            request_id=rid(), company_id=tenant.company_id, license_id=held.license_id,
            ext_key="101", number="+6567891230",
        )
    )  # fmt: skip
    assert (extension.license.ext_key, extension.license.number) == ("101", "+6567891230")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.SetExtension(
            pb.SetExtensionRequest(
                request_id=rid(), company_id=tenant.company_id, license_id=held.license_id,
                ext_key="101", number="12ab",
            )
        )  # fmt: skip
    assert reason_of(caught.value) == "MALFORMED_NUMBER"

    moved = await tenant.stub.ReassignLicense(
        pb.ReassignLicenseRequest(
            request_id=rid(), company_id=tenant.company_id, license_id=held.license_id,
            user_id=alice.user_id,
        )
    )  # fmt: skip
    assert moved.license.user_id == alice.user_id
    assert len(moved.license.addons) == 2
    assert moved.license.ext_key == "101"
    unit = await tenant.platform.pool.GetUnit(
        pool_pb.GetUnitRequest(company_id=tenant.company_id, unit_id=held.license_id)
    )
    assert unit.unit.assignee.id == alice.user_id  # the pool follows the reassignment

    assert [h.license_id for h in await tenant.licenses(user_id=alice.user_id)] == [held.license_id]
    assert await tenant.licenses(user_id=john.user_id) == []
    assert [h.license_id for h in await tenant.licenses(ext_key="10")] == [held.license_id]
    assert await tenant.licenses(ext_key="2") == []
    assert [h.license_id for h in await tenant.licenses(license_type="phone_system")] == [
        held.license_id
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.licenses(license_type="call_group", ext_key="1")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    removed = await tenant.stub.RemoveAddons(
        pb.RemoveAddonsRequest(
            request_id=rid(), company_id=tenant.company_id, license_id=held.license_id,
            addon_types=["call_recording"],
        )
    )  # fmt: skip
    assert [a.license_type for a in removed.license.addons] == ["device_ip_phone"]
    (returned,) = removed.returned_unit_ids
    assert await unit_state(tenant, returned) == pool_pb.UNIT_STATE_SPARE

    unassigned = await tenant.stub.UnassignLicense(
        pb.UnassignLicenseRequest(
            request_id=rid(), company_id=tenant.company_id, license_id=held.license_id
        )
    )
    assert len(unassigned.returned_unit_ids) == 2
    for unit in unassigned.returned_unit_ids:
        assert await unit_state(tenant, unit) == pool_pb.UNIT_STATE_SPARE
    assert await tenant.licenses() == []


async def test_terminate_requires_unassigning_first(tenant: Tenant) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "connect", 1)
    await tenant.company.add("hq", "call_group", 1)
    user = await tenant.user("hq", "Dan")
    held = await tenant.assign(user, "call_group")

    def terminate(unit: str) -> pb.TerminateLicenseRequest:
        return pb.TerminateLicenseRequest(
            request_id=rid(), company_id=tenant.company_id, subscription_id=unit
        )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.TerminateLicense(terminate(held.license_id))
    assert reason_of(caught.value) == "LICENSE_IN_USE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.TerminateLicense(terminate(user.license_unit_id))
    assert reason_of(caught.value) == "NOT_A_PORTAL_LICENSE"
    await tenant.stub.UnassignLicense(
        pb.UnassignLicenseRequest(
            request_id=rid(), company_id=tenant.company_id, license_id=held.license_id
        )
    )
    done = await tenant.stub.TerminateLicense(terminate(held.license_id))
    assert done.subscription.state == "TERMINATED"
    assert await unit_state(tenant, held.license_id) == pool_pb.UNIT_STATE_TERMINATED


async def test_other_company_sees_nothing(tenant: Tenant) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "connect", 1)
    user = await tenant.user("hq", "Eve")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.GetUser(pb.GetUserRequest(company_id=rid(), user_id=user.user_id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
