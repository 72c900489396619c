"""Helpers for talking to the provisioning service in tests (pool, and billing when
purchases are tested, in-process too)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import asyncpg
import grpc

from libs.common.clock import Clock
from licensing.billing.v1 import billing_pb2_grpc
from licensing.pool.v1 import pool_pb2_grpc
from licensing.provisioning.v1 import provisioning_pb2 as pb
from licensing.provisioning.v1 import provisioning_pb2_grpc
from services.provisioning.app import ProvisioningApp, start
from services.provisioning.config import ProvisioningSettings
from services.provisioning.use_cases.operations import StepObserver
from tests.support import tls
from tests.support.billing import Shop, running_billing
from tests.support.pool import Company, new_company, rid, running_pool
from tests.support.processes import ServiceProcess, spawn


@dataclass
class Platform:
    """The pool and provisioning services, running in this process."""

    provisioning: ProvisioningApp
    stub: provisioning_pb2_grpc.ProvisioningServiceStub
    pool: pool_pb2_grpc.PoolServiceStub


@asynccontextmanager
async def running_provisioning(
    database_url: str,
    clock: Clock | None = None,
    after_step: StepObserver | None = None,
    **overrides: object,
) -> AsyncIterator[Platform]:
    """`after_step` is told every step of an operation that takes pool units."""
    async with running_pool(database_url, clock, sweep_interval_seconds=3600) as (pool, stub):  # noqa: SIM117
        async with running_provisioning_only(
            database_url, stub, f"127.0.0.1:{pool.port}", clock, after_step, **overrides
        ) as platform:
            yield platform


@dataclass
class PlatformWithBilling(Platform):
    """Pool, billing and provisioning in this process; provisioning buys through billing."""

    billing: billing_pb2_grpc.BillingServiceStub


@asynccontextmanager
async def running_provisioning_with_billing(
    database_url: str, clock: Clock | None = None, **overrides: object
) -> AsyncIterator[PlatformWithBilling]:
    async with running_pool(database_url, clock, sweep_interval_seconds=3600) as (pool, stub):
        pool_address = f"127.0.0.1:{pool.port}"
        async with running_billing(database_url, pool_address, clock) as (billing, billing_stub):  # noqa: SIM117
            async with running_provisioning_only(
                database_url,
                stub,
                pool_address,
                clock,
                billing_address=f"127.0.0.1:{billing.port}",
                **overrides,
            ) as platform:
                yield PlatformWithBilling(
                    platform.provisioning, platform.stub, platform.pool, billing_stub
                )


@asynccontextmanager
async def running_provisioning_only(
    database_url: str,
    pool_stub: pool_pb2_grpc.PoolServiceStub,
    pool_address: str,
    clock: Clock | None = None,
    after_step: StepObserver | None = None,
    **overrides: object,
) -> AsyncIterator[Platform]:
    settings = ProvisioningSettings(
        database_url=database_url,
        port=0,
        pool_address=pool_address,
        **overrides,  # type: ignore[arg-type]
    )
    app = await start(settings, clock, after_step=after_step)
    channel = tls.channel(
        f"127.0.0.1:{app.port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    try:
        yield Platform(app, provisioning_pb2_grpc.ProvisioningServiceStub(channel), pool_stub)
    finally:
        await channel.close()
        await app.stop()


@dataclass
class Tenant:
    """A company with offices in the pool and users/licenses in provisioning."""

    platform: Platform
    company: Company

    @property
    def company_id(self) -> str:
        return self.company.company_id

    @property
    def stub(self) -> provisioning_pb2_grpc.ProvisioningServiceStub:
        return self.platform.stub

    async def user(
        self, office: str, name: str, license_type: str = "connect", email: str = ""
    ) -> pb.User:
        response: pb.CreateUserResponse = await self.stub.CreateUser(
            pb.CreateUserRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.company.offices[office],
                display_name=name,
                email=email,
                license_type=license_type,
            )
        )
        return response.user

    async def assign(self, user: pb.User, license_type: str = "phone_system") -> pb.License:
        response: pb.AssignLicenseResponse = await self.stub.AssignLicense(
            pb.AssignLicenseRequest(
                request_id=rid(),
                company_id=self.company_id,
                user_id=user.user_id,
                license_type=license_type,
            )
        )
        return response.license

    async def configure(
        self, office: str, content: bytes, import_id: str | None = None, validate_only: bool = False
    ) -> pb.Import:
        response: pb.MassConfigureResponse = await self.stub.MassConfigure(
            pb.MassConfigureRequest(
                import_id=import_id or ("" if validate_only else f"imp-{uuid.uuid4()}"),
                company_id=self.company_id,
                office_id=self.company.offices[office],
                content=content,
                validate_only=validate_only,
            )
        )
        return response.import_job

    async def finished(self, import_id: str) -> pb.Import:
        last: pb.Import | None = None
        async for message in self.stub.WatchImport(
            pb.WatchImportRequest(company_id=self.company_id, import_id=import_id)
        ):
            last = message.import_job
        assert last is not None
        return last

    async def licenses(self, **filters: object) -> list[pb.License]:
        found: list[pb.License] = []
        token = ""
        while True:
            page = await self.stub.SearchLicenses(
                pb.SearchLicensesRequest(company_id=self.company_id, page_token=token, **filters)  # type: ignore[arg-type]
            )
            found.extend(page.licenses)
            token = page.next_page_token
            if not token:
                return found


def new_tenant(platform: Platform) -> Tenant:
    return Tenant(platform, new_company(platform.pool))


def shop_tenant(platform: PlatformWithBilling) -> tuple[Shop, Tenant]:
    """A company set up through billing (plans register its offices in the pool), seen
    both as a billing shop and as a provisioning tenant (sharing the offices)."""
    shop = Shop(platform.billing, platform.pool)
    return shop, Tenant(platform, Company(platform.pool, shop.company_id, shop.offices))


# --- all services as separate processes (e2e) ----------------------------------------

_BIG_MESSAGES = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def service_env(name: str, database_url: str, traces: str = "", **extra: str) -> dict[str, str]:
    """The environment of one service process: its database, a free port, quiet logs,
    spans to the file `traces` when given, and `extra` as <NAME>_<KEY> variables."""
    prefix = name.upper()
    env = {
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_PORT": "0",
        f"{prefix}_LOG_LEVEL": "WARNING",
        **{f"{prefix}_{k.upper()}": v for k, v in extra.items()},
    }
    if traces:
        env[f"{prefix}_TRACES"] = traces
    return env


@dataclass
class Processes:
    """Pool, billing and provisioning, each its own `python -m services.<name>` process,
    talking over real gRPC; `platform` holds the stubs tests use (its `provisioning` app
    is None: the service runs elsewhere)."""

    database_url: str
    traces: str
    provisioning_env: dict[str, str]
    stack: AsyncExitStack
    pool: ServiceProcess
    billing: ServiceProcess
    billing_stub: billing_pb2_grpc.BillingServiceStub
    platform: Platform
    provisioning: ServiceProcess | None = None

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = tls.channel(address, options=_BIG_MESSAGES)
        self.stack.push_async_callback(channel.close)
        return channel

    async def start_provisioning(self) -> ServiceProcess:
        """A (new) provisioning process; the platform's stub now talks to it."""
        env = service_env("provisioning", self.database_url, self.traces, **self.provisioning_env)
        env |= {"POOL_ADDRESS": self.pool.address, "BILLING_ADDRESS": self.billing.address}
        process = await spawn("provisioning", env)
        self.stack.push_async_callback(process.stop)
        self.provisioning = process
        self.platform.stub = provisioning_pb2_grpc.ProvisioningServiceStub(
            self._channel(process.address)
        )
        return process


@asynccontextmanager
async def spawned_platform(
    database_url: str,
    traces: str = "",
    billing_env: Mapping[str, str] | None = None,
    **provisioning: str,
) -> AsyncIterator[Processes]:
    """The three services as processes, stopped with SIGTERM at the end.
    `provisioning` are extra PROVISIONING_<KEY> settings; `billing_env` more variables of
    the billing process."""
    async with AsyncExitStack() as stack:
        pool = await spawn("pool", service_env("pool", database_url, traces))
        stack.push_async_callback(pool.stop)
        billing_env = {**service_env("billing", database_url, traces), **(billing_env or {})}
        billing = await spawn("billing", billing_env | {"POOL_ADDRESS": pool.address})
        stack.push_async_callback(billing.stop)
        pool_channel = tls.channel(pool.address, options=_BIG_MESSAGES)
        stack.push_async_callback(pool_channel.close)
        billing_channel = tls.channel(billing.address)
        stack.push_async_callback(billing_channel.close)
        platform = Platform(
            None,  # type: ignore[arg-type]
            provisioning_pb2_grpc.ProvisioningServiceStub(billing_channel),  # replaced below
            pool_pb2_grpc.PoolServiceStub(pool_channel),
        )
        running = Processes(
            database_url,
            traces,
            dict(provisioning),
            stack,
            pool,
            billing,
            billing_pb2_grpc.BillingServiceStub(billing_channel),
            platform,
        )
        await running.start_provisioning()
        yield running


# --- both services' rows, read straight from the database ---------------------------------


async def pool_units(db: asyncpg.Pool, company_id: str) -> dict[str, dict[str, object]]:
    """Every unit of the company as the pool keeps it (all but the row's updated_at),
    with whether it is on the free-list: equal before and after means "exactly as it was"
    (same state, holder, grace period and place in the claim order)."""
    rows = await db.fetch(
        """
        SELECT u.unit_id, u.office_id, u.license_type, u.state, u.assignee_kind,
               u.assignee_id, u.returned_at, u.claimable_at, u.hold_id, u.held_from,
               f.unit_id IS NOT NULL AS free
        FROM pool.units u LEFT JOIN pool.free_units f USING (unit_id)
        WHERE u.company_id = $1
        """,
        uuid.UUID(company_id),
    )
    return {str(r["unit_id"]): {k: v for k, v in r.items() if k != "unit_id"} for r in rows}


async def stray_units(db: asyncpg.Pool, company_id: str) -> list[str]:
    """Units that are HELD, or ASSIGNED to a user or base license provisioning does not
    have: what a half-done operation leaves behind."""
    rows = await db.fetch(
        """
        SELECT u.unit_id, u.state FROM pool.units u
        WHERE u.company_id = $1 AND (u.state = 'HELD' OR (u.state = 'ASSIGNED' AND (
            (u.assignee_kind = 'USER' AND NOT EXISTS (
                SELECT 1 FROM provisioning.users p WHERE p.user_id::text = u.assignee_id))
            OR (u.assignee_kind = 'BASE_LICENSE' AND NOT EXISTS (
                SELECT 1 FROM provisioning.licenses l
                WHERE l.license_id::text = u.assignee_id)))))
        """,
        uuid.UUID(company_id),
    )
    return [f"{r['unit_id']} {r['state']}" for r in rows]


async def operation_step(db: asyncpg.Pool, company_id: str, request_id: str) -> str | None:
    """The step of the pool operation of a request (None: there is none)."""
    step: str | None = await db.fetchval(
        "SELECT step FROM provisioning.pool_operations WHERE company_id = $1 AND request_id = $2",
        uuid.UUID(company_id),
        request_id,
    )
    return step
