"""The billing service, as provisioning uses it: buying licenses that no source can give.

Provisioning asks billing to buy the shortfall only when a request says so
(`purchase_if_needed`). Without a billing service (`BillingNotConfigured`) every purchase
is declined and the request fails with NO_LICENSE_AVAILABLE, carrying the shortfall,
exactly as when no purchase was asked for.

`BillingClient` calls `PurchaseLicenses` through `libs.common.peer.Peer`: a request_id
derived from the provisioning request's (billing replays a purchase it already made), so
it is retried on UNAVAILABLE and ABORTED (PURCHASE_IN_PROGRESS while another driver
finishes the same purchase); billing's refusals reach our caller with billing's reason
(PRICING_MISMATCH, NO_ACTIVE_PLAN, ...), and a billing service that cannot be reached is
UNAVAILABLE (BILLING_UNAVAILABLE).
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

import grpc

from libs.common.peer import Gateway, PeerSettings
from libs.common.reasons import Reason
from licensing.billing.v1 import billing_pb2 as pb
from licensing.billing.v1 import billing_pb2_grpc

log = logging.getLogger(__name__)


class BillingGateway(Protocol):
    """Buys licenses for an office (billing's PurchaseLicenses)."""

    @property
    def configured(self) -> bool:
        """Whether purchases can be made at all."""
        ...

    async def purchase(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        request_id: str,
    ) -> None:
        """Buys `quantity` units, which then exist in the pool service as SPARE units of
        the office. Idempotent by `request_id`. Raises a DomainError when refused."""
        ...


class BillingNotConfigured:
    """No billing service: nothing can be bought."""

    @property
    def configured(self) -> bool:
        return False

    async def purchase(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        request_id: str,
    ) -> None:
        raise AssertionError("purchase() called on BillingNotConfigured")


class BillingClient(Gateway[billing_pb2_grpc.BillingServiceStub]):
    """`BillingGateway` over billing's contract: `timeout` per call (its retries
    included), at most `attempts` tries, at most `max_wait_seconds` between two."""

    stub_type = billing_pb2_grpc.BillingServiceStub
    service = pb.DESCRIPTOR.services_by_name["BillingService"]
    unavailable = Reason.BILLING_UNAVAILABLE

    def __init__(
        self,
        address: str,
        timeout: float,
        attempts: int,
        max_wait_seconds: float = 1.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        retries = PeerSettings(
            deadline_seconds=timeout, max_attempts=attempts, max_backoff_seconds=max_wait_seconds
        )
        super().__init__(address, retries, credentials)

    @property
    def configured(self) -> bool:
        return True

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
        response: pb.PurchaseLicensesResponse = await self._peer.call(
            self._stub.PurchaseLicenses, request
        )
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
