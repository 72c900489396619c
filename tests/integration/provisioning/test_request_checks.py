"""A value PostgreSQL cannot store is refused before provisioning allocates anything."""

from __future__ import annotations

import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pool_pb
from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support.pool import reason_of, rid
from tests.support.provisioning import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_create_user_with_a_nul_in_its_name_allocates_nothing(tenant: Tenant) -> None:
    await tenant.company.office("hq", "USD")
    (unit,) = await tenant.company.add("hq", "connect", 1)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await tenant.stub.CreateUser(
            pb.CreateUserRequest(
                request_id=rid(),
                company_id=tenant.company_id,
                office_id=tenant.company.offices["hq"],
                display_name="Jo\x00hn",
                license_type="connect",
            )
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(raised.value) == "INVALID_CHARACTERS"
    assert "display_name" in (raised.value.details() or "")
    found = await tenant.platform.pool.GetUnit(
        pool_pb.GetUnitRequest(company_id=tenant.company_id, unit_id=unit)
    )
    assert found.unit.state == pool_pb.UNIT_STATE_SPARE
    users = await tenant.stub.ListUsers(pb.ListUsersRequest(company_id=tenant.company_id))
    assert list(users.users) == []
