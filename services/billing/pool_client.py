"""The pool service, as billing sees it: grpc.aio calls with deadlines and trace context.

- Every call has a deadline (`pool_deadline_seconds`).
- Only calls that carry a request_id are retried (SPEC §12), on UNAVAILABLE, ABORTED and
  DEADLINE_EXCEEDED, with the same request_id: the pool replays instead of repeating.
- Pool errors become our domain errors with the pool's ErrorInfo reason and metadata, so
  callers of billing see NOT_ENOUGH_SPARE, HOLD_EXPIRED, ... as the pool said them. A pool
  that cannot be reached is UNAVAILABLE (reason POOL_UNAVAILABLE).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from libs.common.error_status import error_info, other_details
from libs.common.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from libs.common.peer import dial
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
_KINDS: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def translate(error: grpc.aio.AioRpcError) -> DomainError:
    """The domain error for a failed pool call, keeping the pool's reason."""
    code = error.code()
    kind = _KINDS.get(code)
    if kind is None:
        # Down, timed out, or broken inside: to our callers the dependency is unavailable.
        log.warning("pool call failed: %s %s", code, error.details())
        return Unavailable(
            "POOL_UNAVAILABLE",
            "the pool service is unavailable; retry later with the same request_id",
        )
    info = error_info(error)
    reason = info.reason if info else code.name
    metadata = dict(info.metadata) if info else {}
    return kind(reason, error.details() or reason, metadata, other_details(error))


def _retryable(error: BaseException) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in RETRYABLE


class PoolClient:
    """Typed calls to licensing.pool.v1.PoolService."""

    def __init__(
        self,
        address: str,
        deadline_seconds: float = 5.0,
        attempts: int = 4,
        max_wait_seconds: float = 1.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._channel = dial(
            address,
            credentials,
            # A pool that comes back is found again within seconds, not minutes.
            options=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
            interceptors=aio_client_interceptors(),  # type: ignore[no-untyped-call]
        )
        self._stub = pool_pb2_grpc.PoolServiceStub(self._channel)
        self._deadline = deadline_seconds
        self._attempts = attempts
        self._max_wait = max_wait_seconds

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        """One call; retried only when the request carries a request_id."""
        idempotent = bool(getattr(request, "request_id", ""))
        try:
            if not idempotent:
                return await method(request, timeout=self._deadline)
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_retryable),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.05, max=self._max_wait),
                reraise=True,
            ):
                with attempt:
                    return await method(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            raise translate(error) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def put_office(self, request: pb.PutOfficeRequest) -> pb.PutOfficeResponse:
        return await self._call(self._stub.PutOffice, request)

    async def get_pool(self, company_id: str, currency: str) -> pb.GetPoolResponse:
        return await self._call(
            self._stub.GetPool, pb.GetPoolRequest(company_id=company_id, currency=currency)
        )

    async def reserve(self, request: pb.ReserveRequest) -> pb.ReserveResponse:
        return await self._call(self._stub.Reserve, request)

    async def commit(self, request: pb.CommitRequest) -> pb.CommitResponse:
        return await self._call(self._stub.Commit, request)

    async def release(self, request: pb.ReleaseRequest) -> pb.ReleaseResponse:
        return await self._call(self._stub.Release, request)

    async def get_hold(self, company_id: str, hold_id: str) -> pb.GetHoldResponse:
        return await self._call(
            self._stub.GetHold, pb.GetHoldRequest(company_id=company_id, hold_id=hold_id)
        )

    async def add_units(self, request: pb.AddUnitsRequest) -> pb.AddUnitsResponse:
        return await self._call(self._stub.AddUnits, request)

    async def mark_for_removal(
        self, request: pb.MarkForRemovalRequest
    ) -> pb.MarkForRemovalResponse:
        return await self._call(self._stub.MarkForRemoval, request)

    async def restore_from_removal(
        self, request: pb.RestoreFromRemovalRequest
    ) -> pb.RestoreFromRemovalResponse:
        return await self._call(self._stub.RestoreFromRemoval, request)

    async def terminate_units(self, request: pb.TerminateUnitsRequest) -> pb.TerminateUnitsResponse:
        return await self._call(self._stub.TerminateUnits, request)

    async def snapshot(self, company_id: str) -> pb.GetSnapshotResponse:
        return await self._call(
            self._stub.GetSnapshot, pb.GetSnapshotRequest(company_id=company_id)
        )

    async def list_units(self, request: pb.ListUnitsRequest) -> list[pb.Unit]:
        """Every unit matching the filters (all pages)."""
        found: list[pb.Unit] = []
        page = pb.ListUnitsRequest()
        page.CopyFrom(request)
        page.page_size = 1000
        while True:
            response: pb.ListUnitsResponse = await self._call(self._stub.ListUnits, page)
            found.extend(response.units)
            if not response.next_page_token:
                return found
            page.page_token = response.next_page_token
