"""CreateUser(purchase_if_needed) buys the shortfall through billing: pool, billing and
provisioning in this process, over real gRPC and PostgreSQL."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2

from libs.common.errors import Unavailable
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.provisioning.v1 import provisioning_pb2 as pb
from services.provisioning.adapters.billing import BillingClient
from services.provisioning.app import billing_client
from services.provisioning.config import ProvisioningSettings
from tests.support.billing import Shop
from tests.support.pool import details_of, reason_of, rid
from tests.support.provisioning import (
    PlatformWithBilling,
    Tenant,
    running_provisioning_with_billing,
    shop_tenant,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A plan started a while ago: new units are charged, prorated to the cycle's end.
START = datetime.now(UTC) - timedelta(days=3)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(database_url: str) -> AsyncIterator[PlatformWithBilling]:
    async with running_provisioning_with_billing(database_url) as running:
        yield running


@pytest.fixture
def shop_and_tenant(platform: PlatformWithBilling) -> tuple[Shop, Tenant]:
    return shop_tenant(platform)


def create_user(
    tenant: Tenant, office: str, name: str, purchase: bool, request_id: str | None = None
) -> pb.CreateUserRequest:
    return pb.CreateUserRequest(
        request_id=request_id or rid(),
        company_id=tenant.company_id,
        office_id=tenant.company.offices[office],
        display_name=name,
        license_type="connect",
        purchase_if_needed=purchase,
    )


async def test_no_license_buys_the_shortfall_then_allocates(
    shop_and_tenant: tuple[Shop, Tenant],
) -> None:
    shop, tenant = shop_and_tenant
    await shop.plan("hq", "USD", {"connect": 1000}, START)
    request = create_user(tenant, "hq", "Ann", purchase=True)

    created = await tenant.stub.CreateUser(request)

    (purchase,) = await shop.purchases()
    assert purchase.state == bpb.PURCHASE_STATE_COMPLETED
    assert (purchase.quantity, purchase.restored, purchase.from_pool) == (1, 0, 0)
    assert purchase.new_units == 1
    assert 0 < purchase.amount.amount_minor <= 1000
    (unit,) = await shop.units(office_id=shop.offices["hq"])
    assert unit.state == ppb.UNIT_STATE_ASSIGNED
    assert unit.unit_id == created.user.license_unit_id
    assert unit.assignee.id == created.user.user_id

    # A replay returns the same user and buys nothing more.
    again = await tenant.stub.CreateUser(request)
    assert again == created
    assert len(await shop.purchases()) == 1
    assert len(await shop.units()) == 1


async def test_without_purchase_if_needed_nothing_is_bought(
    shop_and_tenant: tuple[Shop, Tenant],
) -> None:
    shop, tenant = shop_and_tenant
    await shop.plan("hq", "USD", {"connect": 1000}, START)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.CreateUser(create_user(tenant, "hq", "Ann", purchase=False))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "NO_LICENSE_AVAILABLE"
    assert await shop.purchases() == []
    assert await shop.units() == []


async def test_only_the_shortfall_is_bought_and_removals_are_restored_first(
    shop_and_tenant: tuple[Shop, Tenant],
) -> None:
    shop, tenant = shop_and_tenant
    await shop.plan("hq", "USD", {"connect": 1000}, START)
    scheduled = await shop.add("hq", "connect", 1)
    assert await shop.remove("hq", "connect", 1) == scheduled

    created = await tenant.stub.CreateUser(create_user(tenant, "hq", "Ann", purchase=True))

    # The unit scheduled for removal came back (free) instead of a new one.
    (purchase,) = await shop.purchases()
    assert (purchase.restored, purchase.from_pool, purchase.new_units) == (1, 0, 0)
    assert purchase.amount.amount_minor == 0
    assert created.user.license_unit_id == scheduled[0]
    assert await shop.states("hq", "connect") == {"ASSIGNED": 1}


async def test_billing_refusal_keeps_its_reason(shop_and_tenant: tuple[Shop, Tenant]) -> None:
    shop, tenant = shop_and_tenant
    # A pooled currency whose plans price connect differently: billing refuses.
    await shop.plan("a", "USD", {"connect": 1000}, START)
    await shop.plan("b", "USD", {"connect": 1200}, START)
    await shop.enable("USD")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.CreateUser(create_user(tenant, "a", "Ann", purchase=True))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "PRICING_MISMATCH"
    (info,) = details_of(caught.value, error_details_pb2.ErrorInfo)
    assert info.domain.startswith("provisioning")
    assert await shop.units() == []
    users = await tenant.stub.ListUsers(pb.ListUsersRequest(company_id=tenant.company_id))
    assert list(users.users) == []


async def test_office_without_a_plan_fails_with_billing_s_reason(
    shop_and_tenant: tuple[Shop, Tenant],
) -> None:
    """An office known to the pool but with no plan in billing cannot buy."""
    shop, tenant = shop_and_tenant
    await tenant.company.office("hq", "USD")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.CreateUser(create_user(tenant, "hq", "Ann", purchase=True))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "NO_ACTIVE_PLAN"
    assert await shop.units() == []


async def test_billing_down_is_unavailable_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = BillingClient(f"127.0.0.1:{port}", timeout=2, attempts=2, max_wait_seconds=0.05)
    try:
        with pytest.raises(Unavailable) as caught:
            await client.purchase(uuid.uuid4(), uuid.uuid4(), "connect", 1, rid())
    finally:
        await client.close()
    assert caught.value.reason == "BILLING_UNAVAILABLE"


async def test_billing_address_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONING_BILLING_ADDRESS", raising=False)
    monkeypatch.delenv("BILLING_ADDRESS", raising=False)
    assert ProvisioningSettings().billing_address is None
    assert billing_client(ProvisioningSettings()) is None  # BillingNotConfigured then

    monkeypatch.setenv("BILLING_ADDRESS", "127.0.0.1:50052")
    assert ProvisioningSettings().billing_address == "127.0.0.1:50052"
    monkeypatch.setenv("PROVISIONING_BILLING_ADDRESS", "billing:50052")
    assert ProvisioningSettings().billing_address == "billing:50052"
