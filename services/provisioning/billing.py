"""The seam to the billing service: buying licenses that no source can give.

Provisioning asks billing to buy the shortfall only when a request says so
(`purchase_if_needed`). Until a billing client is plugged in, `BillingNotConfigured`
declines every purchase and the request fails with NO_LICENSE_AVAILABLE, carrying the
shortfall, exactly as when no purchase was asked for.
"""

from __future__ import annotations

import uuid
from typing import Protocol


class BillingGateway(Protocol):
    """Buys licenses for an office (SPEC §9 PurchaseLicenses)."""

    @property
    def configured(self) -> bool:
        """Whether purchases can be made at all."""

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
