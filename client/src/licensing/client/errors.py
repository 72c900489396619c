"""Reading the details of a failed call.

Every refusal of the platform carries one `google.rpc.ErrorInfo` (AIP-193) in the
status details: `reason` is a stable name (`NO_LICENSE_AVAILABLE`, ...) to branch on,
`domain` the service's, and `metadata` what the reason is about. Some refusals carry
more details (e.g. `google.rpc.RetryInfo` when a service sheds load).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

# Where gRPC carries a rich google.rpc.Status: the trailing metadata of the call.
DETAILS_KEY = "grpc-status-details-bin"


def status_details(error: grpc.RpcError) -> list[any_pb2.Any]:
    """Every detail of a failed call (sync or asyncio), packed as it came; none when the
    call carries no rich status, or one that does not match the call's code."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        code = error.code() if hasattr(error, "code") else None
        if code is None or status.code != code.value[0]:
            return []
        return list(status.details)
    return []


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The `ErrorInfo` of a failed call, if it has one."""
    for detail in status_details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def reason(error: grpc.RpcError) -> str | None:
    """The `ErrorInfo` reason of a failed call (`NO_LICENSE_AVAILABLE`, ...), if any."""
    info = error_info(error)
    return info.reason if info is not None else None


def other_details(error: grpc.RpcError) -> tuple[any_pb2.Any, ...]:
    """The details besides the `ErrorInfo` (e.g. an allocation receipt, a `RetryInfo`),
    packed as they came."""
    return tuple(
        d for d in status_details(error) if not d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
    )


def retry_delay_seconds(error: grpc.RpcError) -> float | None:
    """The delay a `google.rpc.RetryInfo` asks for before trying again, if any."""
    for detail in other_details(error):
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None


__all__ = [
    "DETAILS_KEY",
    "error_info",
    "other_details",
    "reason",
    "retry_delay_seconds",
    "status_details",
]
