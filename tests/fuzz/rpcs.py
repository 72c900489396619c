"""Every RPC of every service, found in the generated descriptors, and one generic way to
call any of them with raw request bytes."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

import licensing
from libs.common.error_status import error_info


@dataclass(frozen=True)
class Rpc:
    service: ServiceDescriptor
    method: MethodDescriptor

    @property
    def id(self) -> str:
        return f"{self.service.name}.{self.method.name}"

    @property
    def path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)


def every_rpc() -> list[Rpc]:
    """The methods of every service in every generated `*_pb2` module under `licensing`."""
    found: list[Rpc] = []
    for module_info in pkgutil.walk_packages(licensing.__path__, "licensing."):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(module_info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend(Rpc(service, method) for method in service.methods)
    return sorted(found, key=lambda rpc: rpc.path)


@dataclass
class Outcome:
    """How one call ended."""

    code: grpc.StatusCode
    message: str = ""
    reason: str = ""  # the google.rpc.ErrorInfo reason, when the status carries one
    responses: list[Message] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.code.name} {self.reason}".strip()


# How long an open server stream may stay quiet after its first message.
QUIET = 1.0


def _identity(payload: bytes) -> bytes:
    return payload


async def call(
    channel: grpc.aio.Channel, rpc: Rpc, payloads: list[bytes], deadline: float
) -> Outcome:
    """Sends already-encoded request bytes (several for a client stream) to `rpc`, the way
    any client could: a generic call by full method name, no generated stub."""
    parse = rpc.response_class.FromString
    client_streams = rpc.method.client_streaming
    server_streams = rpc.method.server_streaming

    async def requests() -> AsyncIterator[bytes]:
        for payload in payloads:
            yield payload

    responses: list[Message] = []
    try:
        if not client_streams and not server_streams:
            unary = channel.unary_unary(rpc.path, _identity, _identity)
            responses.append(parse(await unary(payloads[0], timeout=deadline)))
        elif not client_streams:
            stream = channel.unary_stream(rpc.path, _identity, _identity)
            streaming = stream(payloads[0], timeout=deadline)
            answers = aiter(streaming)
            try:
                responses.append(parse(await anext(answers)))
                # A stream that stays open (WatchEvents follows new events) has
                # answered once it goes quiet after its first message.
                while True:
                    responses.append(parse(await asyncio.wait_for(anext(answers), QUIET)))
            except (StopAsyncIteration, TimeoutError):
                pass
            finally:
                streaming.cancel()
        elif not server_streams:
            gather = channel.stream_unary(rpc.path, _identity, _identity)
            responses.append(parse(await gather(requests(), timeout=deadline)))
        else:
            both = channel.stream_stream(rpc.path, _identity, _identity)
            async for raw in both(requests(), timeout=deadline):
                responses.append(parse(raw))
    except grpc.aio.AioRpcError as error:
        info = error_info(error)
        return Outcome(error.code(), error.details() or "", info.reason if info else "")
    return Outcome(grpc.StatusCode.OK, responses=responses)
