"""Finding out what answers at an address: gRPC health checking and server reflection."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from licensing_cli.security import open_channel

PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class Probe:
    """What one address answered."""

    address: str
    health: str  # SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN or UNREACHABLE
    services: tuple[str, ...]
    problem: str = ""

    @property
    def reachable(self) -> bool:
        return self.health != "UNREACHABLE"


def health_of(channel: grpc.Channel, service: str = "", timeout: float = PROBE_SECONDS) -> str:
    """The health status of `service` ("" = the server as a whole), or UNREACHABLE."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return "SERVICE_UNKNOWN"
        return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def listed_services(channel: grpc.Channel, timeout: float = PROBE_SECONDS) -> tuple[str, ...]:
    """The services the server lists through reflection, sorted."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = stub.ServerReflectionInfo(iter([request]), timeout=timeout)
    names: list[str] = []
    for response in responses:
        names.extend(s.name for s in response.list_services_response.service)
    return tuple(sorted(names))


def probe(address: str, timeout: float = PROBE_SECONDS) -> Probe:
    """Health of the whole server and the services it lists; never raises for RPC errors."""
    with open_channel(address) as channel:
        health = health_of(channel, timeout=timeout)
        if health == "UNREACHABLE":
            return Probe(address, health, (), "no answer (is it running?)")
        try:
            services = listed_services(channel, timeout)
        except grpc.RpcError as error:
            return Probe(address, health, (), f"reflection failed: {error.code().name}")
    return Probe(address, health, services)
