"""The server's admission: the cap on calls in flight, its refusal, and draining."""

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from libs.common.admission import Admission
from libs.common.error_status import CallGuard
from tests.support.pool import details_of, reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

WAIT = "/test.Held/Wait"


class Held:
    """A method whose calls stay in flight until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.calls = 0

    async def wait(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return request


@pytest_asyncio.fixture(loop_scope="session")
async def served() -> AsyncIterator[tuple[Admission, Held, grpc.aio.Channel]]:
    admission = Admission(limit=1)
    held = Held()
    server = grpc.aio.server()
    guarded = CallGuard("test", None, admission).service(
        "test.Held", {"Wait": grpc.unary_unary_rpc_method_handler(held.wait)}
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Held", guarded),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield admission, held, channel
    finally:
        held.release.set()
        await channel.close()
        await server.stop(None)


async def test_calls_beyond_the_cap_are_refused_with_a_retry_delay(
    served: tuple[Admission, Held, grpc.aio.Channel],
) -> None:
    admission, held, channel = served
    wait = channel.unary_unary(WAIT)
    first = asyncio.ensure_future(wait(b"first", timeout=10))
    await asyncio.wait_for(held.started.wait(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await wait(b"second", timeout=10)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(refused.value) == "OVERLOADED"
    (retry,) = details_of(refused.value, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() > 0
    assert held.calls == 1  # refused before the handler ran
    # Health checks are never capped: probes answer however busy the service is.
    checked = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert not await admission.drain(quiet=0.05, longest=0.2)  # a call is still running
    held.release.set()
    assert await first == b"first"
    assert await admission.drain(quiet=0.05, longest=10)
    assert admission.in_flight == 0
