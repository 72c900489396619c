"""The one way a service calls another: deadlines, retries, balancing, errors.

- **Deadline**: each call gets what is left of our caller's deadline minus a margin (to
  answer our caller in time), capped by a default; without a caller (background work)
  the default. No time left: DEADLINE_EXCEEDED at once, without calling.
- **Retries** only for methods whose request carries a `request_id` (the peer replays a
  request it already did), only on UNAVAILABLE and ABORTED, and only within the call's
  deadline. They are gRPC's own retries, configured in the channel's service config.
- **Balancing**: `round_robin` over every address the target resolves to (a headless
  Kubernetes Service gives one per replica); servers close connections after a maximum
  age, so new replicas get traffic too.
- **Identity**: with TLS on, the channel presents the service's own certificate
  (`libs.common.tls.peer_credentials`), and every call carries on the company-scoped
  token of the call being served, if it came with one (`TokenForwarding`): the peer
  holds it to the same companies.
- **Errors**: a peer's `ErrorInfo` reason comes back as the same registered reason (with
  its metadata and the other details, e.g. an allocation receipt, passed on as they
  came); a peer that cannot be reached or breaks inside is `UNAVAILABLE` with the peer's
  own reason (POOL_UNAVAILABLE, ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from libs.common import call_context
from libs.common.authz import current_token
from libs.common.error_status import error_info, other_details
from libs.common.errors import DomainError, error_of
from libs.common.logging_limits import RateLimitedWarning
from libs.common.reasons import Reason
from libs.common.tokens import METADATA_KEY as TOKEN_METADATA_KEY
from licensing import client
from licensing.client import MAX_MESSAGE_BYTES, RETRYABLE_CODES, mutating_methods

# Channels are the client package's (licensing.client), as any caller of ours gets them.
__all__ = [
    "MAX_MESSAGE_BYTES",
    "RETRYABLE_CODES",
    "Gateway",
    "Peer",
    "PeerSettings",
    "mutating_methods",
]

S = TypeVar("S")
R = TypeVar("R")

_unreachable = RateLimitedWarning(10.0)


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """How calls to a peer behave; the defaults suit calls between our services."""

    deadline_seconds: float = 5.0  # at most this long per call (the retries included)
    margin_seconds: float = 0.05  # kept from the caller's deadline to answer it in time
    max_attempts: int = 4  # per call that may be retried (gRPC allows at most 5)
    max_backoff_seconds: float = 1.0  # the longest wait between two tries
    keepalive_seconds: float = 30.0


def service_config(services: Iterable[ServiceDescriptor], settings: PeerSettings) -> str:
    """The gRPC service config: round_robin, and retries for idempotent methods."""
    return client.service_config(services, settings.max_attempts, settings.max_backoff_seconds)


def channel_options(
    services: Iterable[ServiceDescriptor], settings: PeerSettings
) -> list[tuple[str, Any]]:
    return client.channel_options(
        services, max_attempts=settings.max_attempts, keepalive_seconds=settings.keepalive_seconds
    )


class TokenForwarding(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the served call's company-scoped token to each outgoing call."""

    @staticmethod
    def _details(details: Any) -> Any:
        token = current_token()
        if token is None:
            return details
        metadata = list(details.metadata or ())
        metadata.append((TOKEN_METADATA_KEY, f"Bearer {token.raw}"))
        return details._replace(metadata=metadata)

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


def open_channel(
    target: str,
    services: Iterable[ServiceDescriptor],
    settings: PeerSettings,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """A channel to `target` (host:port, dns:///name:port, ipv4:a:p,b:p) with our options,
    tracing, the served call's token carried on, and TLS when `credentials` are given."""
    return client.aio_channel(
        target,
        credentials=credentials,
        services=list(services),
        max_attempts=settings.max_attempts,
        keepalive_seconds=settings.keepalive_seconds,
        interceptors=[
            TokenForwarding(),
            *aio_client_interceptors(),  # type: ignore[no-untyped-call]
        ],
    )


def call_timeout(settings: PeerSettings) -> float:
    """The deadline of one call, in seconds from now."""
    remaining = call_context.time_remaining()
    if remaining is None:
        return settings.deadline_seconds
    left = remaining - settings.margin_seconds
    if left <= 0:
        raise Reason.DEADLINE_EXCEEDED.error("no time was left to call a peer service")
    return min(settings.deadline_seconds, left)


def translate(error: grpc.aio.AioRpcError, unavailable: Reason) -> DomainError:
    """Our domain error for a peer's failed call."""
    info = error_info(error)
    reason = Reason.parse(info.reason) if info is not None else None
    if reason is not None and info is not None:
        return error_of(
            reason, error.details() or reason.meaning, dict(info.metadata), other_details(error)
        )
    # No reason we know: not reached, out of time, or broken inside. For our callers the
    # dependency is unavailable; retrying with the same request_id is safe.
    _unreachable.warn("a %s call failed: %s %s", unavailable.name, error.code(), error.details())
    return unavailable.error(f"{unavailable.meaning} (with the same request_id)")


class Peer(Generic[S]):
    """A peer service: its channel, its typed stub, and how its failures are named."""

    def __init__(
        self,
        target: str,
        stub: Callable[[grpc.aio.Channel], S],
        service: ServiceDescriptor,
        unavailable: Reason,
        settings: PeerSettings | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.settings = settings or PeerSettings()
        self._channel = open_channel(target, [service], self.settings, credentials)
        self.stub = stub(self._channel)
        self._unavailable = unavailable

    async def call(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        """One call to the peer (retried by gRPC when the request carries a request_id)."""
        try:
            return await method(request, timeout=call_timeout(self.settings))
        except grpc.aio.AioRpcError as error:
            raise translate(error, self._unavailable) from None

    async def close(self) -> None:
        await self._channel.close()


class Gateway(Generic[S]):
    """The plumbing of a typed gateway to one peer: the peer, its stub, closing it. A
    subclass names the peer's `stub_type`, `service` and the reason it is `unavailable`
    with, and speaks its own service's domain objects."""

    stub_type: Callable[[grpc.aio.Channel], S]
    service: ServiceDescriptor
    unavailable: Reason

    def __init__(
        self,
        target: str,
        settings: PeerSettings | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._peer = Peer(
            target, self.stub_type, self.service, self.unavailable, settings, credentials
        )
        self._stub = self._peer.stub

    async def close(self) -> None:
        await self._peer.close()
