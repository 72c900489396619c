"""All four services in this process, on their own database, and a channel to each by
the full names of the services it serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common.clock import FakeClock
from libs.common.database import create_pool
from libs.common.server import RunningServer
from licensing.billing.v1 import billing_pb2_grpc
from licensing.credits.v1 import credits_pb2_grpc
from licensing.pool.v1 import pool_pb2_grpc
from licensing.provisioning.v1 import provisioning_pb2_grpc
from tests.support import tls
from tests.support.billing import running_billing
from tests.support.credits import running_credits
from tests.support.pool import running_pool
from tests.support.provisioning import running_provisioning_only

_OPTIONS = [
    ("grpc.max_receive_message_length", 128 << 20),
    ("grpc.max_send_message_length", 128 << 20),
]


@dataclass
class Platform:
    db: asyncpg.Pool
    servers: list[RunningServer]
    channels: dict[str, grpc.aio.Channel]  # full service name -> channel to its server
    pool: pool_pb2_grpc.PoolServiceStub
    billing: billing_pb2_grpc.BillingServiceStub
    credits: credits_pb2_grpc.CreditsServiceStub
    provisioning: provisioning_pb2_grpc.ProvisioningServiceStub
    clock: FakeClock

    async def unhealthy(self) -> list[str]:
        """Services (and servers, by the empty name) whose health check is not SERVING."""
        problems = []
        for server in self.servers:
            channel = self.channels[server.names[0]]
            for name in (*server.names, ""):
                try:
                    answer = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=name), timeout=10
                    )
                except grpc.aio.AioRpcError as error:
                    problems.append(f"{name or server.names[0]}: health check {error.code().name}")
                    continue
                if answer.status != health_pb2.HealthCheckResponse.SERVING:
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                    problems.append(f"{name or server.names[0]}: {status}")
        return problems


@asynccontextmanager
async def running_platform(database_url: str, clock: FakeClock) -> AsyncIterator[Platform]:
    """Pool, credits, billing (buying through the pool, keeping credit accounts) and
    provisioning (allocating from the pool, buying through billing), wired the way the
    other integration tests wire them."""
    async with AsyncExitStack() as stack:
        pool_app, pool = await stack.enter_async_context(
            running_pool(database_url, clock, sweep_interval_seconds=3600)
        )
        pool_address = f"127.0.0.1:{pool_app.port}"
        credits_app, credits = await stack.enter_async_context(running_credits(database_url, clock))
        billing_app, billing = await stack.enter_async_context(
            running_billing(
                database_url, pool_address, clock, credits_address=f"127.0.0.1:{credits_app.port}"
            )
        )
        provisioning = await stack.enter_async_context(
            running_provisioning_only(
                database_url,
                pool,
                pool_address,
                clock,
                billing_address=f"127.0.0.1:{billing_app.port}",
            )
        )
        servers = [
            app.server for app in (pool_app, billing_app, credits_app, provisioning.provisioning)
        ]
        channels = {}
        for server in servers:
            channel = tls.channel(f"127.0.0.1:{server.port}", options=_OPTIONS)
            stack.push_async_callback(channel.close)
            channels.update(dict.fromkeys(server.names, channel))
        db = await create_pool(database_url, 2)
        stack.push_async_callback(db.close)
        yield Platform(db, servers, channels, pool, billing, credits, provisioning.stub, clock)
