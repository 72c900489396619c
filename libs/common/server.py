"""The gRPC server every service runs: health, reflection, errors, tracing, shutdown.

Health has two faces. The server's overall status ("") and each service's name say
whether calls can be answered: NOT_SERVING while the database cannot be reached (readiness:
route elsewhere). `LIVENESS` says only that the process is up and answering, so an
outage of the database does not get the service restarted.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from libs.common.database_outage import DatabaseWatch
from libs.common.error_status import ErrorMappingInterceptor
from libs.common.settings import ServiceSettings

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
LIVENESS = "liveness"


@dataclass(frozen=True)
class Registration:
    """One gRPC service to serve: its full name, its servicer and the generated adder."""

    name: str
    servicer: Any
    add: Callable[[Any, grpc.aio.Server], None]


@dataclass
class RunningServer:
    """A started server, the port it listens on, its health servicer and database watch."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    names: tuple[str, ...]
    database: DatabaseWatch

    async def set_serving(self, serving: bool) -> None:
        """Whether calls can be answered (the overall status and each service's)."""
        status = health_pb2.HealthCheckResponse.SERVING
        if not serving:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for name in (*self.names, ""):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Stops taking calls (health NOT_SERVING), lets in-flight calls finish."""
        await self.database.stop()
        await self.set_serving(False)
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)


async def start_server(
    registrations: Sequence[Registration],
    settings: ServiceSettings,
    error_domain: str,
    database: DatabaseWatch,
) -> RunningServer:
    """Builds and starts the server on `settings.host:settings.port` (0: a free port).

    `database` turns calls that fail on an unreachable database into UNAVAILABLE and
    health into NOT_SERVING until the database answers again; the server stops it.

    Calls beyond `settings.max_concurrent_rpcs` in flight are refused at once with
    RESOURCE_EXHAUSTED: an overloaded service sheds load instead of queueing without bound.
    """
    server = grpc.aio.server(
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        interceptors=[aio_server_interceptor(), ErrorMappingInterceptor(error_domain, database)],  # type: ignore[no-untyped-call]
        options=[
            ("grpc.so_reuseport", 0),
            # CSV uploads and bulk responses (10,000 units) exceed gRPC's 4 MB default.
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    for registration in registrations:
        registration.add(registration.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(r.name for r in registrations)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    bound = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    running = RunningServer(server, bound, health_servicer, names, database)
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    await running.set_serving(True)
    database.start(running.set_serving)
    return running


async def wait_for_signal() -> None:
    """Returns on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
