"""The gRPC server every service runs: health, reflection, errors, tracing, shutdown.

Health has two faces. The server's overall status ("") and each service's name say
whether calls can be answered: NOT_SERVING while the database cannot be reached (readiness:
route elsewhere). `LIVENESS` says only that the process is up and answering, so an
outage of the database does not get the service restarted.

The port speaks mutual TLS (`libs.common.tls`: certificates reloaded when their files
change) and every call passes `libs.common.authz` (caller identity, policy, token),
unless `<SVC>_TLS_ENABLED=false`. `<SVC>_HEALTH_PORT` adds a plaintext port that serves
only grpc.health.v1, for probes that speak no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from libs.common import tls, workers
from libs.common.admission import Admission
from libs.common.authz import Authorizer, Policy
from libs.common.database_outage import DatabaseWatch
from libs.common.error_status import CallGuard
from libs.common.settings import ServiceSettings
from libs.common.telemetry import TRACED_CALLS
from libs.common.tokens import TokenVerifier
from licensing.client import MAX_MESSAGE_BYTES  # clients and servers allow the same

log = logging.getLogger(__name__)

LIVENESS = "liveness"
# Calls gRPC core holds until grpc.aio takes them (one at a time, on the event loop). Past
# core's default backlog (1,000, then randomly up to 3,000) core drops arrivals itself and
# their callers see a bare CANCELLED. With this bound core never sheds before the service
# does: every call reaches `Admission`, which refuses with RESOURCE_EXHAUSTED and a retry
# delay (a call still waiting in core at its deadline ends as DEADLINE_EXCEEDED).
MAX_UNTAKEN_CALLS = 100_000
# A drain ends once no call has run for this long (the last untaken ones were taken).
DRAIN_QUIET_SECONDS = 0.2


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
    admission: Admission
    # The plaintext port that serves only grpc.health.v1 (kubelet's probes), if any.
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    credentials: tls.ReloadingServerCredentials | None = None

    async def set_serving(self, serving: bool) -> None:
        """Whether calls can be answered (the overall status and each service's)."""
        status = health_pb2.HealthCheckResponse.SERVING
        if not serving:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for name in (*self.names, ""):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING; within `grace`, answers every call that had reached the
        server (half of it to drain the calls gRPC core still holds), then stops."""
        await self.database.stop()
        await self.set_serving(False)
        started = asyncio.get_running_loop().time()
        if grace > 0:
            await self.admission.drain(DRAIN_QUIET_SECONDS, longest=grace / 2)
        elapsed = asyncio.get_running_loop().time() - started
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(max(grace - elapsed, 0))
        if self.health_server is not None:
            await self.health_server.stop(0)


async def stop_service(
    server: RunningServer,
    grace: float,
    tasks: Iterable[asyncio.Task[None]],
    closing: Iterable[Callable[[], Awaitable[None]]],
    pools: Iterable[asyncpg.Pool | None],
) -> None:
    """Stops a service in an order that loses nothing: the server (within `grace`), then
    its background tasks, then what they used (peers, writers: `closing`, where a
    failure to close is not worth more than the stop), and the database pools last."""
    await server.stop(grace)
    running = list(tasks)
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for close in closing:
        with contextlib.suppress(Exception):
            await close()
    for pool in pools:
        if pool is not None:
            await pool.close()


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
    RESOURCE_EXHAUSTED OVERLOADED and a retry delay: an overloaded service sheds load
    instead of queueing without bound.
    """
    admission = Admission(settings.max_concurrent_rpcs)
    files = tls.service_files(settings)
    authorizer = None
    if files is not None:
        # Checked where each handler is guarded: it sees decoded requests, its refusals
        # are statuses.
        authorizer = Authorizer(
            Policy.load(settings.policy_file or None),
            TokenVerifier(settings.jwks_file or None, settings.token_audience),
        )
    else:
        log.warning("TLS is off: the port is plaintext and every caller is trusted")
    # Off unless the port is shared by design: a second copy started by mistake must fail
    # to bind, not take half the connections.
    reuse_port = int(workers.shares_port(settings))
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", reuse_port),
            ("grpc.server.max_pending_requests", MAX_UNTAKEN_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_UNTAKEN_CALLS),
            # CSV uploads and bulk responses (10,000 units) exceed gRPC's 4 MB default.
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Long-lived connections would pin a client to the replicas it first found.
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
            (
                "grpc.max_connection_age_grace_ms",
                int(settings.max_connection_age_grace_seconds * 1000),
            ),
        ],
    )
    guard = CallGuard(error_domain, database, admission, authorizer)
    for registration in registrations:
        await _add_guarded(registration, server, guard.service)
    # Health and reflection are the server's own: not guarded (health answers even when
    # overloaded), but with TLS on their callers are checked against the policy too.
    own: Wrap = _unwrapped
    if authorizer is not None:
        checker = authorizer

        def own(name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> Handlers:
            return checker.guard_service(name, handlers, error_domain)

    health_servicer = health.aio.HealthServicer()
    names = tuple(r.name for r in registrations)
    await _add_through(
        own,
        server,
        lambda registry: health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registry),
        "grpc.health.v1.Health",
    )
    await _add_through(
        own,
        server,
        lambda registry: reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                (
                    *names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                )
            ),
            registry,
        ),
        reflection.SERVICE_NAME,
    )
    address = f"{settings.host}:{settings.port}"
    credentials = None
    if files is None:
        bound = server.add_insecure_port(address)
    else:
        credentials = tls.ReloadingServerCredentials(files)
        bound = server.add_secure_port(address, credentials.credentials)
    health_server, health_port = None, None
    if settings.health_port is not None:
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", reuse_port)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_port = health_server.add_insecure_port(f"{settings.host}:{settings.health_port}")
    await server.start()
    if health_server is not None:
        await health_server.start()
    running = RunningServer(
        server,
        bound,
        health_servicer,
        names,
        database,
        admission,
        health_server,
        health_port,
        credentials,
    )
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    await running.set_serving(True)
    database.start(running.set_serving)
    return running


Handlers = dict[str, grpc.RpcMethodHandler]
Wrap = Callable[[str, Handlers], Handlers]


def _unwrapped(name: str, handlers: Handlers) -> Handlers:
    return handlers


class _GuardingRegistry:
    """What a generated `add_<Service>Servicer_to_server` registers through: it hands
    over the service's method handlers, and they are kept, guarded, to be traced and
    served."""

    def __init__(self, guard: Wrap) -> None:
        self._guard = guard
        self.services: list[tuple[str, Handlers]] = []
        self.unguarded = 0  # generic handlers handed over without their method handlers

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        # Built from the same method handlers, which come next (unguarded: not served).
        self.unguarded += len(handlers)

    def add_registered_method_handlers(
        self, name: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.services.append((name, self._guard(name, handlers)))
        self.unguarded -= 1


@dataclass(frozen=True)
class _MethodDetails(grpc.HandlerCallDetails):  # type: ignore[misc]
    """What the tracing interceptor reads of a call to choose and name its span: only
    the method (the caller's metadata it reads from the call's context)."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


# OpenTelemetry's server instrumentation, applied to each handler once, when it is
# registered, rather than as a `grpc.aio` interceptor: with any interceptor installed,
# grpc.aio runs its interceptor pipeline on every call (measured: about 150 us of CPU
# per call, a third of what a refused call costs). The spans are the same: each call's
# parent context and attributes come from the call itself.
_TRACING = aio_server_interceptor(filter_=TRACED_CALLS)  # type: ignore[no-untyped-call]


async def _traced(name: str, handlers: Handlers) -> Handlers:
    traced = {}
    for method, handler in handlers.items():

        async def registered(
            details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler = handler
        ) -> grpc.RpcMethodHandler:
            return handler

        traced[method] = await _TRACING.intercept_service(
            registered, _MethodDetails(f"/{name}/{method}")
        )
    return traced


async def _add_guarded(registration: Registration, server: grpc.aio.Server, guard: Wrap) -> None:
    await _add_through(
        guard,
        server,
        lambda registry: registration.add(registration.servicer, registry),
        registration.name,
    )


async def _add_through(
    guard: Wrap, server: grpc.aio.Server, add: Callable[[Any], None], name: str
) -> None:
    registry = _GuardingRegistry(guard)
    add(registry)
    if registry.unguarded:  # an adder that does not hand over its method handlers
        raise RuntimeError(f"{name}: its handlers cannot be guarded")
    for service, guarded in registry.services:
        handlers = await _traced(service, guarded)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)


async def wait_for_signal() -> None:
    """Returns on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
