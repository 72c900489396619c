"""A client that knows nothing of our code finds and calls the service by reflection."""

import asyncio
import uuid

import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.pool.app import PoolApp
from tests.support import tls

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_reflection_health_and_a_dynamic_call(pool_service: tuple[PoolApp, object]) -> None:
    # A blocking client, in a thread: the server runs on this test's event loop.
    await asyncio.to_thread(discover_and_call, f"127.0.0.1:{pool_service[0].port}")


def discover_and_call(address: str) -> None:
    with tls.sync_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert "licensing.pool.v1.PoolService" in database.get_services()
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("licensing.pool.v1.PoolService")
        method = service.methods_by_name["PutOffice"]
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            "/licensing.pool.v1.PoolService/PutOffice",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        request = request_type()
        request.request_id = str(uuid.uuid4())
        request.office.company_id = str(uuid.uuid4())
        request.office.office_id = str(uuid.uuid4())
        request.office.currency = "EUR"
        request.office.plan_kind = (
            pool.FindEnumTypeByName("licensing.pool.v1.PlanKind")
            .values_by_name["PLAN_KIND_BUNDLE"]
            .number
        )
        response = call(request)
        assert response.office.currency == "EUR"

        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="licensing.pool.v1.PoolService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
