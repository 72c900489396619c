"""Channels and stubs of the four services, and the one way commands call them.

Every call goes through `Endpoint.call`, which applies the deadline and turns a failed
call into `CallFailed`, naming the service, its address and the method, so that an error
can say which service refused or could not be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from licensing.billing.v1 import billing_pb2_grpc
from licensing.credits.v1 import credits_pb2_grpc
from licensing.pool.v1 import pool_pb2_grpc
from licensing.provisioning.v1 import provisioning_pb2_grpc
from licensing_cli.security import open_channel

StubT = TypeVar("StubT")

# Service name -> (default address, environment variable, full gRPC service name).
SERVICES: dict[str, tuple[str, str, str]] = {
    "pool": ("127.0.0.1:50051", "LICENSING_POOL", "licensing.pool.v1.PoolService"),
    "billing": ("127.0.0.1:50052", "LICENSING_BILLING", "licensing.billing.v1.BillingService"),
    "credits": ("127.0.0.1:50053", "LICENSING_CREDITS", "licensing.credits.v1.CreditsService"),
    "provisioning": (
        "127.0.0.1:50054",
        "LICENSING_PROVISIONING",
        "licensing.provisioning.v1.ProvisioningService",
    ),
}


class CallFailed(Exception):
    """A call to a service ended with a non-OK status."""

    def __init__(
        self, service: str, address: str, method: str, error: grpc.RpcError, request_id: str
    ) -> None:
        super().__init__(f"{service} {method} failed")
        self.service = service
        self.address = address
        self.method = method
        self.error = error
        self.request_id = request_id
        # What a reason means for the command that failed (its own flags), by reason.
        self.hints: dict[str, str] = {}


@contextmanager
def hinted(**hints: str) -> Iterator[None]:
    """Calls in this block that fail with one of these reasons are explained with the
    command's own words (e.g. its --purchase flag) instead of the general ones."""
    try:
        yield
    except CallFailed as failure:
        failure.hints.update(hints)
        raise


def method_name(request: Message) -> str:
    """`GetPoolRequest` -> `GetPool`: every request message is named after its method."""
    return type(request).__name__.removesuffix("Request")


@dataclass
class Endpoint(Generic[StubT]):
    """One service: where it listens, its channel and its stub."""

    name: str
    address: str
    channel: grpc.Channel
    stub: StubT
    timeout: float

    def call(self, method: Callable[..., Any], request: Message) -> Any:
        """Calls a unary method of `stub` with the deadline; raises `CallFailed`."""
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._failed(request, error) from None

    def stream(self, method: Callable[..., Any], request: Message) -> Iterator[Any]:
        """Calls a server-streaming method (no deadline: it lasts as long as it lasts)."""
        try:
            yield from method(request)
        except grpc.RpcError as error:
            raise self._failed(request, error) from None

    def _failed(self, request: Message, error: grpc.RpcError) -> CallFailed:
        request_id = str(getattr(request, "request_id", ""))
        return CallFailed(self.name, self.address, method_name(request), error, request_id)


@dataclass
class Clients:
    """Lazily opened channels to the services; `close()` closes what was opened."""

    addresses: dict[str, str]
    timeout: float
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def channel(self, name: str) -> grpc.Channel:
        if name not in self._channels:
            # The client package's channel (64 MB messages, retries for request_id calls)
            # with the operator's certificate and token (`security`).
            self._channels[name] = open_channel(self.addresses[name])
        return self._channels[name]

    def _endpoint(self, name: str, make: Callable[[grpc.Channel], StubT]) -> Endpoint[StubT]:
        channel = self.channel(name)
        return Endpoint(name, self.addresses[name], channel, make(channel), self.timeout)

    @property
    def pool(self) -> Endpoint[pool_pb2_grpc.PoolServiceStub]:
        return self._endpoint("pool", pool_pb2_grpc.PoolServiceStub)

    @property
    def billing(self) -> Endpoint[billing_pb2_grpc.BillingServiceStub]:
        return self._endpoint("billing", billing_pb2_grpc.BillingServiceStub)

    @property
    def credits(self) -> Endpoint[credits_pb2_grpc.CreditsServiceStub]:
        return self._endpoint("credits", credits_pb2_grpc.CreditsServiceStub)

    @property
    def provisioning(self) -> Endpoint[provisioning_pb2_grpc.ProvisioningServiceStub]:
        return self._endpoint("provisioning", provisioning_pb2_grpc.ProvisioningServiceStub)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
