"""Turns exceptions escaping a handler into gRPC statuses (AIP-193).

Domain errors become their status code with one `google.rpc.ErrorInfo`; anything else
is logged with its traceback and answered INTERNAL with a generic message, so internals
never leak to callers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.common import call_context, metrics
from libs.common.errors import DomainError, ErrorKind, InvalidArgument
from libs.common.logging_limits import RateLimitedWarning
from libs.common.request_checks import decoder
from licensing.client.errors import error_info, other_details

if TYPE_CHECKING:
    from libs.common.admission import Admission
    from libs.common.authz import Authorizer
    from libs.common.database_outage import DatabaseWatch

log = logging.getLogger(__name__)

# The reading side of `status_of` is the client package's, the one our callers use too.
__all__ = ["CallGuard", "error_info", "expected_error", "other_details", "status_of"]

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


class CallGuard:
    """Wraps every handler of a service, once, when it is registered: each call is
    admitted (`Admission`), its request decoded and checked (`request_checks`: gRPC
    hands the handler raw bytes, so a request that does not parse, or holds a value the
    database cannot store, is refused INVALID_ARGUMENT like any other domain error), and
    whatever escapes the handler becomes a status: `DomainError` its own, a database
    that cannot be reached UNAVAILABLE (`libs.common.database_outage`), anything else
    INTERNAL.

    Wrapping at registration rather than in a `ServerInterceptor` keeps grpc.aio's
    per-call interceptor machinery off every call: an overloaded server refuses calls
    at the rate it can take them, so what each call costs before it is refused matters.
    """

    def __init__(
        self,
        domain: str,
        database: DatabaseWatch | None = None,
        admission: Admission | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self._domain = domain
        self._database = database
        self._admission = admission
        self._authorizer = authorizer

    def service(
        self, name: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> dict[str, grpc.RpcMethodHandler]:
        """The guarded handlers of service `name` (its method name -> handler)."""
        return {method: self.guard(f"/{name}/{method}", h) for method, h in handlers.items()}

    def guard(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The guarded handler of `method` (its full name, "/package.Service/Method")."""
        return self._guard(method, handler)

    def _guard(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        decode = decoder(method, handler.request_deserializer)
        admission = (
            None if self._admission is None or self._admission.exempt(method) else self._admission
        )
        authorizer = self._authorizer

        def fail(error: Exception, context: grpc.aio.ServicerContext) -> None:
            """Sets the call's status for `error`; gRPC sends it when the handler returns
            (cheaper than `abort`, which raises through every layer: an overloaded
            server refuses calls at the rate it can take them)."""
            if not isinstance(error, DomainError):
                error = expected_error(error, method, self._database) or error
            if isinstance(error, DomainError):
                status = status_of(error, self._domain)
                context.set_code(status.code)
                context.set_details(status.details)
                context.set_trailing_metadata(status.trailing_metadata)
                return
            log.error("unexpected error in %s", method, exc_info=error)
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details("internal error")

        if handler.unary_unary is not None:
            unary: Handler = handler.unary_unary

            async def guarded(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                call = call_context.begin(method, context.time_remaining())
                began = time.perf_counter()
                started = None
                scoped = None
                try:
                    if admission is not None:
                        started = admission.enter()
                    if authorizer is None:
                        return await unary(decode(raw), context)
                    token = authorizer.check(method, context)
                    request = decode(raw)
                    if token is not None:
                        scoped = authorizer.enter(token, request)
                    return await unary(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    fail(error, context)
                    return b""  # not sent: a call with an error status has no message
                finally:
                    if scoped is not None:
                        authorizer.leave(scoped)  # type: ignore[union-attr]
                    if started is not None:
                        admission.leave(started)  # type: ignore[union-attr]
                    metrics.record_call(method, context.code(), time.perf_counter() - began)
                    call_context.end(call)

            return grpc.unary_unary_rpc_method_handler(
                guarded,
                request_deserializer=None,
                response_serializer=passing_bytes(handler.response_serializer),
            )
        if handler.unary_stream is not None:
            stream: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
            stream = handler.unary_stream

            async def guarded_stream(
                raw: bytes, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                # Each call runs in a task of its own: the context ends with it (an async
                # generator may be closed from another context, where a reset would fail).
                call_context.begin(method, context.time_remaining())
                began = time.perf_counter()
                started = None
                try:
                    if admission is not None:
                        started = admission.enter(stream=True)
                    if authorizer is None:
                        request = decode(raw)
                    else:
                        token = authorizer.check(method, context)
                        request = decode(raw)
                        if token is not None:
                            authorizer.enter(token, request)  # ends with the call's task
                    async for item in stream(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    fail(error, context)  # the stream ends with this status
                finally:
                    if started is not None:
                        admission.leave(started, stream=True)  # type: ignore[union-attr]
                    metrics.record_call(method, context.code(), time.perf_counter() - began)

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return handler


def passing_bytes(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    """The method's response serializer, except that bytes go out as they are: a
    mutating handler returns the response it stored for its request_id, already encoded
    (`handlers.once`), so it is neither parsed back nor encoded twice."""

    def serialized(response: Any) -> bytes:
        if isinstance(response, bytes) or serialize is None:
            return response  # type: ignore[no-any-return]
        return serialize(response)

    return serialized


_unstorable = RateLimitedWarning(10.0)


def expected_error(
    error: Exception, method: str, database: DatabaseWatch | None
) -> DomainError | None:
    """The domain error an exception from below the domain stands for, if any.

    A database that cannot be reached is UNAVAILABLE (`database_outage`).

    A PostgreSQL data exception (SQLSTATE class 22: a value out of range, a string the
    database cannot store) can only come from a value the caller sent that no check
    refused earlier: INVALID_ARGUMENT, logged as one line (the checks should catch it
    first, with the field named).
    """
    if database is not None and (unavailable := database.unavailable(error)) is not None:
        return unavailable
    if isinstance(error, asyncpg.DataError):
        _unstorable.warn("%s: a value could not be stored (SQLSTATE %s)", method, error.sqlstate)
        return InvalidArgument("VALUE_NOT_STORABLE", "a value in the request cannot be stored")
    return None
