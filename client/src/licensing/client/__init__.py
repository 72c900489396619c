"""Calling the licensing platform from Python.

from licensing.client import aio_channel, reason
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc

async with aio_channel("dns:///pool.licensing:50051") as channel:
    pool = pool_pb2_grpc.PoolServiceStub(channel)
    try:
        await pool.Reserve(request, timeout=5)
    except grpc.aio.AioRpcError as error:
        if reason(error) == "NO_LICENSE_AVAILABLE": ...
"""

from licensing.client.channels import (
    MAX_MESSAGE_BYTES,
    RETRYABLE_CODES,
    SERVICES,
    Tls,
    aio_channel,
    channel,
    channel_options,
    mutating_methods,
    service_config,
)
from licensing.client.errors import (
    error_info,
    other_details,
    reason,
    retry_delay_seconds,
    status_details,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "RETRYABLE_CODES",
    "SERVICES",
    "Tls",
    "aio_channel",
    "channel",
    "channel_options",
    "error_info",
    "mutating_methods",
    "other_details",
    "reason",
    "retry_delay_seconds",
    "service_config",
    "status_details",
]
