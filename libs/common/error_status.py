"""Turns exceptions escaping a handler into gRPC statuses (AIP-193).

Domain errors become their status code with one `google.rpc.ErrorInfo`; anything else
is logged with its traceback and answered INTERNAL with a generic message, so internals
never leak to callers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.common.errors import DomainError, ErrorKind

if TYPE_CHECKING:
    from libs.common.database_outage import DatabaseWatch

log = logging.getLogger(__name__)

_CODES = {kind: getattr(grpc.StatusCode, kind.value) for kind in ErrorKind}


def status_of(error: DomainError, domain: str) -> grpc.Status:
    """The rich gRPC status for a domain error."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata)
    details = []
    for message in (info, *error.details):
        if isinstance(message, any_pb2.Any):  # passed through from a peer as it came
            details.append(message)
            continue
        packed = any_pb2.Any()
        packed.Pack(message)
        details.append(packed)
    code = _CODES[error.kind]
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(status)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps `DomainError` to its status, and anything unexpected to INTERNAL (but a
    database that cannot be reached to UNAVAILABLE, see `libs.common.database_outage`)."""

    def __init__(self, domain: str, database: DatabaseWatch | None = None) -> None:
        self._domain = domain
        self._database = database

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        async def abort(error: Exception, context: grpc.aio.ServicerContext) -> None:
            if self._database is not None and not isinstance(error, DomainError):
                error = self._database.unavailable(error) or error
            if isinstance(error, DomainError):
                status = status_of(error, self._domain)
                await context.abort(status.code, status.details, status.trailing_metadata)
            log.error("unexpected error in %s", method, exc_info=error)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        if handler.unary_unary is not None:
            unary: Handler = handler.unary_unary

            async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await unary(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await abort(error, context)

            return grpc.unary_unary_rpc_method_handler(
                guarded,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
            stream = handler.unary_stream

            async def guarded_stream(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                try:
                    async for item in stream(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await abort(error, context)

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The `google.rpc.ErrorInfo` a peer attached to a failed call, if any (the reading
    side of `status_of`, for clients of our services)."""
    for detail in _details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def other_details(error: grpc.aio.AioRpcError) -> tuple[any_pb2.Any, ...]:
    """The details of a failed call besides its ErrorInfo (e.g. an allocation receipt),
    packed as they came, to pass on to our own callers."""
    return tuple(d for d in _details(error) if not d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR))


def _details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any]:
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # details that do not match the status
        return []
    return list(status.details) if status else []
