"""Channels to the platform's services, the way the services call each other.

- **Message sizes**: 64 MB both ways, as the servers allow (bulk responses and CSV
  uploads exceed gRPC's 4 MB default).
- **Retries**: gRPC's own, from the channel's service config, only for methods whose
  request carries a `request_id` (the service answers a replay with the first outcome),
  only on UNAVAILABLE and ABORTED, and only within the call's deadline.
- **Balancing**: `round_robin` over every address the target resolves to
  (`dns:///pool-headless:50051` gives one per replica; `ipv4:10.0.0.1:50051,10.0.0.2:50051`
  names them).
- **Keepalive**: pings on idle connections, so a peer that vanished is noticed.
- **TLS** when configured (`Tls`: the CA to trust, and a client certificate and key for
  mutual TLS); plaintext otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from licensing.billing.v1 import billing_pb2
from licensing.credits.v1 import credits_pb2
from licensing.pool.v1 import pool_pb2
from licensing.provisioning.v1 import provisioning_pb2

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RETRYABLE_CODES = ("UNAVAILABLE", "ABORTED")
MAX_ATTEMPTS = 4  # per call that may be retried (gRPC allows at most 5)
KEEPALIVE_SECONDS = 30.0


def _services(*files: FileDescriptor) -> tuple[ServiceDescriptor, ...]:
    return tuple(service for file in files for service in file.services_by_name.values())


# Every service of the platform.
SERVICES = _services(
    pool_pb2.DESCRIPTOR, billing_pb2.DESCRIPTOR, credits_pb2.DESCRIPTOR, provisioning_pb2.DESCRIPTOR
)


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS material: the CA certificates to trust (None: the system's), and for mutual
    TLS this client's certificate chain and private key (PEM)."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None  # the name to check the server's certificate against

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        certificate: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> Tls:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return cls(read(ca), read(certificate), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("a client certificate needs its private key, and the other way")
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def mutating_methods(services: Iterable[ServiceDescriptor] = SERVICES) -> list[tuple[str, str]]:
    """(service, method) of every method whose request carries a request_id."""
    return [
        (service.full_name, method.name)
        for service in services
        for method in service.methods
        if "request_id" in method.input_type.fields_by_name
    ]


def service_config(
    services: Iterable[ServiceDescriptor] = SERVICES,
    max_attempts: int = MAX_ATTEMPTS,
    max_backoff_seconds: float = 1.0,
) -> str:
    """The gRPC service config: round_robin, and retries for the request_id methods."""
    names = [{"service": s, "method": m} for s, m in mutating_methods(services)]
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if names and max_attempts > 1:
        config["methodConfig"] = [
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": min(max_attempts, 5),
                    "initialBackoff": f"{min(0.05, max_backoff_seconds)}s",
                    "maxBackoff": f"{max_backoff_seconds}s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": list(RETRYABLE_CODES),
                },
            }
        ]
    return json.dumps(config)


def channel_options(
    services: Iterable[ServiceDescriptor] = SERVICES,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    server_name: str | None = None,
) -> list[tuple[str, Any]]:
    """The options of every channel to the platform."""
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", service_config(services, max_attempts)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", int(keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # A service that comes back is found again within seconds, not minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def address_list_host(target: str) -> str | None:
    """For a list of addresses (`ipv4:a:p,b:p`, `ipv6:[a]:p,...`, one per replica of a
    service), the first one's host: the name the replicas' certificates are checked
    against (gRPC would check the whole list, which no certificate names). None for any
    other target, whose own name is checked."""
    scheme, _, rest = target.partition(":")
    if scheme not in ("ipv4", "ipv6") or not rest:
        return None
    first = rest.lstrip("/").split(",")[0]
    host = first.rsplit(":", 1)[0] if first.count(":") == 1 or "]" in first else first
    return host.strip("[]") or None


def _server_name(target: str, tls: Tls | None) -> str | None:
    if tls is not None and tls.server_name:
        return tls.server_name
    return address_list_host(target)


def _credentials(
    tls: Tls | None, credentials: grpc.ChannelCredentials | None
) -> grpc.ChannelCredentials | None:
    if tls is not None and credentials is not None:
        raise ValueError("give either tls or credentials")
    return tls.credentials() if tls is not None else credentials


def aio_channel(
    target: str,
    *,
    tls: Tls | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    services: Iterable[ServiceDescriptor] = SERVICES,
    max_attempts: int = MAX_ATTEMPTS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel to `target` (host:port, dns:///name:port, ipv4:a:p,b:p): calls
    are balanced (round_robin) over every address the target names or resolves to."""
    options = channel_options(
        services,
        max_attempts=max_attempts,
        keepalive_seconds=keepalive_seconds,
        server_name=_server_name(target, tls),
    )
    secure = _credentials(tls, credentials)
    if secure is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, secure, options=options, interceptors=interceptors)


def channel(
    target: str,
    *,
    tls: Tls | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    services: Iterable[ServiceDescriptor] = SERVICES,
    max_attempts: int = MAX_ATTEMPTS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> grpc.Channel:
    """A blocking channel to `target`, with the same options as `aio_channel`."""
    options = channel_options(
        services,
        max_attempts=max_attempts,
        keepalive_seconds=keepalive_seconds,
        server_name=_server_name(target, tls),
    )
    secure = _credentials(tls, credentials)
    if secure is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, secure, options=options)
