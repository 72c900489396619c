"""The billing service, as provisioning uses it: `PurchaseLicenses` through its contract.

A `BillingGateway` that buys the shortfall of an allocation. The call carries a deadline
and the trace context (OpenTelemetry client interceptors on the channel). It carries a
request_id derived from the provisioning request's (billing replays a purchase it already
made), so it is retried on UNAVAILABLE and ABORTED (e.g. PURCHASE_IN_PROGRESS while
another driver finishes the same purchase). Billing errors become our domain errors with
billing's ErrorInfo reason and metadata, so PRICING_MISMATCH, NO_ACTIVE_PLAN, ... reach
our caller as billing said them; a billing service that cannot be reached is UNAVAILABLE
(reason BILLING_UNAVAILABLE).
"""

from __future__ import annotations

import logging
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

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
from licensing.billing.v1 import billing_pb2 as pb
from licensing.billing.v1 import billing_pb2_grpc

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
_ERRORS: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    # Billing's own dependency (the pool) down: keep its reason (POOL_UNAVAILABLE).
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status whose details do not match its code and message
        return None
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def domain_error(error: grpc.aio.AioRpcError) -> DomainError:
    """The domain error for a failed billing call, keeping billing's reason."""
    info = _error_info(error)
    kind = _ERRORS.get(error.code())
    if kind is None or info is None or not info.reason:
        # Not reached, timed out, or broken inside: to our callers billing is unavailable.
        log.warning("billing call failed: %s %s", error.code(), error.details())
        return Unavailable(
            "BILLING_UNAVAILABLE",
            "the billing service did not answer; nothing was bought twice. "
            "Retry with the same request_id",
        )
    return kind(info.reason, error.details() or info.reason, dict(info.metadata))


def _retryable(error: BaseException) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in _RETRYABLE


class BillingClient:
    """A channel to the billing service; buys licenses for provisioning."""

    def __init__(
        self,
        address: str,
        timeout: float,
        attempts: int,
        max_wait_seconds: float = 1.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._channel = dial(
            address,
            credentials,
            interceptors=aio_client_interceptors(),  # type: ignore[no-untyped-call]
            # A billing service that comes back is found again within seconds.
            options=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        self._stub = billing_pb2_grpc.BillingServiceStub(self._channel)
        self._timeout = timeout
        self._attempts = attempts
        self._max_wait = max_wait_seconds

    @property
    def configured(self) -> bool:
        return True

    async def close(self) -> None:
        await self._channel.close()

    async def purchase(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        request_id: str,
    ) -> None:
        """Buys `quantity` units (restored, from the pool, or new), which then exist in
        the pool service as SPARE units of the office. Idempotent by `request_id`."""
        request = pb.PurchaseLicensesRequest(
            request_id=request_id,
            company_id=str(company_id),
            office_id=str(office_id),
            license_type=license_type,
            quantity=quantity,
        )
        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.1, max=self._max_wait, jitter=0.1),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response: pb.PurchaseLicensesResponse = await self._stub.PurchaseLicenses(
                        request, timeout=self._timeout
                    )
                    break
        except grpc.aio.AioRpcError as error:
            raise domain_error(error) from None
        bought = response.purchase
        log.info(
            "bought licenses",
            extra={
                "purchase_id": bought.purchase_id,
                "license_type": license_type,
                "restored": bought.restored,
                "from_pool": bought.from_pool,
                "new_units": bought.new_units,
            },
        )
