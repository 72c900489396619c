"""The transport ceiling: a trivial grpc.aio unary echo server (bench/baselines/echo.proto).

Run as `python -m bench.baselines.echo_server --port P --response-bytes N`. It parses the request
and answers with a response of N serialized bytes; nothing else. It also serves gRPC
health checks so the harness knows when it is up.

With `--refuse` it answers every call instead with the status a service sheds load with
(RESOURCE_EXHAUSTED OVERLOADED, its ErrorInfo and RetryInfo, built once): the least a
grpc.aio server can spend on a call it does not serve (S8's floor).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench.baselines.echo_messages import SERVICE, EchoRequest, EchoResponse
from libs.common.error_status import status_of
from libs.common.shedding import overloaded


def make_response(request_id: str, size: int) -> Any:
    """An EchoResponse of `size` serialized bytes (the smallest size above it if none)."""
    response = EchoResponse(request_id=request_id)
    base = response.ByteSize()
    for padding in range(max(0, size - base - 4), max(1, size - base + 1)):
        response.payload = b"x" * padding
        if response.ByteSize() >= size:
            break
    return response


class EchoServicer:
    """Answers every Echo call with the request's id and fixed padding."""

    def __init__(self, response_bytes: int) -> None:
        self._padding = make_response("0" * 36, response_bytes).payload

    async def echo(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return EchoResponse(request_id=request.request_id, payload=self._padding)


class RefusingServicer:
    """Answers every Echo call RESOURCE_EXHAUSTED OVERLOADED, as a shedding service does."""

    def __init__(self) -> None:
        self._status = status_of(overloaded("too busy; retry later", 0.1), "bench.echo")

    async def echo(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        context.set_code(self._status.code)
        context.set_details(self._status.details)
        context.set_trailing_metadata(self._status.trailing_metadata)
        return EchoResponse()  # not sent: a call with an error status has no message


async def serve(port: int, response_bytes: int, refuse: bool = False) -> None:
    server = grpc.aio.server()
    servicer = RefusingServicer() if refuse else EchoServicer(response_bytes)
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                servicer.echo,
                request_deserializer=EchoRequest.FromString,
                response_serializer=EchoResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--response-bytes", type=int, required=True)
    parser.add_argument("--refuse", action="store_true", help="refuse every call (OVERLOADED)")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.response_bytes, args.refuse))


if __name__ == "__main__":
    main()
