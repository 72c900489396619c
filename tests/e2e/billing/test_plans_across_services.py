"""Plans and invoices across real processes (pool, credits, billing): a plan change that
reached the pool when credits was down, and billing killed before it recorded anything,
is finished by the caller's retry with the same request_id, so the three services agree;
the invoice of a closed period carries the credit overage credits recorded."""

import socket
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from licensing.billing.v1 import billing_pb2 as bpb
from licensing.billing.v1 import billing_pb2_grpc
from licensing.credits.v1 import credits_pb2 as cpb
from licensing.credits.v1 import credits_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.billing import Shop, ts
from tests.support.pool import rid
from tests.support.processes import ServiceProcess, spawn

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def last_month() -> tuple[datetime, str]:
    now = datetime.now(UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    first = datetime(year, month, 1, tzinfo=UTC)
    return first, first.strftime("%Y-%m")


def env(name: str, database_url: str, port: int, **extra: str) -> dict[str, str]:
    prefix = name.upper()
    return {
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_PORT": str(port),
        f"{prefix}_LOG_LEVEL": "WARNING",
        **extra,
    }


class Platform:
    """Pool, credits and billing as processes on fixed ports (so a restart is found again)."""

    def __init__(self, stack: AsyncExitStack, database_url: str) -> None:
        self.stack = stack
        self.database_url = database_url
        self.ports = {name: free_port() for name in ("pool", "credits", "billing")}

    async def start(self, name: str) -> ServiceProcess:
        peers = {
            "POOL_ADDRESS": f"127.0.0.1:{self.ports['pool']}",
            "CREDITS_ADDRESS": f"127.0.0.1:{self.ports['credits']}",
            "BILLING_POOL_ATTEMPTS": "2",
        }
        process = await spawn(name, env(name, self.database_url, self.ports[name], **peers))
        return process

    def channel(self, name: str) -> grpc.aio.Channel:
        channel = tls.channel(f"127.0.0.1:{self.ports[name]}")
        self.stack.push_async_callback(channel.close)
        return channel


async def test_a_plan_change_interrupted_between_services_is_finished_by_its_retry(
    database_url: str,
) -> None:
    start, _ = last_month()
    async with AsyncExitStack() as stack:
        platform = Platform(stack, database_url)
        pool = await platform.start("pool")
        stack.push_async_callback(pool.stop)
        credits_process = await platform.start("credits")
        billing = await platform.start("billing")
        shop = Shop(
            billing_pb2_grpc.BillingServiceStub(platform.channel("billing")),
            pool_pb2_grpc.PoolServiceStub(platform.channel("pool")),
        )
        credits = credits_pb2_grpc.CreditsServiceStub(platform.channel("credits"))
        await shop.plan("a", "USD", {"connect": 100}, start)
        await shop.plan("legacy", "USD", {"connect": 100}, start, kind=bpb.PLAN_KIND_LEGACY)
        office_id = shop.offices["legacy"]

        await credits_process.stop()  # credits is down: the pool is told, billing is not
        deactivate = bpb.UpdatePlanRequest(
            request_id=rid(),
            plan=bpb.Plan(company_id=shop.company_id, plan_id=shop.plans["legacy"], active=False),
            update_mask=FieldMask(paths=["active"]),
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await shop.billing.UpdatePlan(deactivate)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        office = await shop.pool.GetOffice(
            ppb.GetOfficeRequest(company_id=shop.company_id, office_id=office_id)
        )
        assert office.office.plan_kind == ppb.PLAN_KIND_NONE  # the pool heard of it
        billing.kill()  # and billing dies before anything more happens
        await billing.process.wait()

        credits_process = await platform.start("credits")
        stack.push_async_callback(credits_process.stop)
        billing = await platform.start("billing")
        stack.push_async_callback(billing.stop)
        shop.billing = billing_pb2_grpc.BillingServiceStub(platform.channel("billing"))
        plan = await shop.billing.GetPlan(
            bpb.GetPlanRequest(company_id=shop.company_id, plan_id=shop.plans["legacy"])
        )
        assert plan.plan.active  # nothing recorded yet: the caller was told UNAVAILABLE

        done = await shop.billing.UpdatePlan(deactivate)  # the caller's retry
        assert not done.plan.active
        again = await shop.billing.UpdatePlan(deactivate)
        assert again == done
        account = await credits.GetAccount(
            cpb.GetAccountRequest(company_id=shop.company_id, office_id=office_id)
        )
        assert account.account.allowance_minor == 0
        await shop.enable("USD")  # the three agree: no active legacy plan in USD


async def test_the_invoice_bills_the_overage_credits_recorded(database_url: str) -> None:
    start, period = last_month()
    async with AsyncExitStack() as stack:
        platform = Platform(stack, database_url)
        for name in ("pool", "credits", "billing"):
            process = await platform.start(name)
            stack.push_async_callback(process.stop)
        shop = Shop(
            billing_pb2_grpc.BillingServiceStub(platform.channel("billing")),
            pool_pb2_grpc.PoolServiceStub(platform.channel("pool")),
        )
        credits = credits_pb2_grpc.CreditsServiceStub(platform.channel("credits"))
        office_id = shop.offices.setdefault("a", rid())
        created = await shop.billing.CreatePlan(
            bpb.CreatePlanRequest(
                request_id=rid(),
                plan=bpb.Plan(
                    company_id=shop.company_id,
                    office_id=office_id,
                    kind=bpb.PLAN_KIND_BUNDLE,
                    currency="USD",
                    start_time=ts(start),
                    credit_allowance_minor=1000,
                ),
            )
        )
        usage = await credits.RecordUsage(
            cpb.RecordUsageRequest(
                request_id=rid(),
                company_id=shop.company_id,
                office_id=office_id,
                kind=cpb.USAGE_KIND_CALLING,
                amount_minor=1250,
                occur_time=ts(start.replace(day=2)),
            )
        )
        assert (usage.usage.split.allowance_minor, usage.usage.split.overage_minor) == (1000, 250)
        closed = await shop.billing.CloseCycle(
            bpb.CloseCycleRequest(request_id=rid(), company_id=shop.company_id, period=period)
        )
        (owed,) = closed.invoice.credit_overages
        assert (owed.office_id, owed.plan_id) == (office_id, created.plan.plan_id)
        assert owed.amount.amount_minor == 250
        assert list(closed.invoice.totals) == [bpb.Money(currency_code="USD", amount_minor=250)]
