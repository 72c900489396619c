"""Every SQL statement of the billing service (schema `billing`), one module per table:
`plans`, `quotes`, `purchases`, `invoices`; `instants` for business time, `rows` for the
columns and their domain objects. Use cases reach them through the unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.billing.domain.model import Purchase
from services.billing.repository.purchases import PurchaseKey, Purchases


class BillingRepository:
    """The purchase-lease statements on a caller's connection, for what runs outside a
    use case's unit of work: the lease heartbeat (`leases.LeaseKeeper`) and tools."""

    async def insert_purchase(
        self,
        conn: asyncpg.Connection,
        purchase: Purchase,
        fingerprint: bytes,
        owner: uuid.UUID,
        lease_seconds: float,
    ) -> bool:
        return await Purchases(conn).insert(purchase, fingerprint, owner, lease_seconds)

    async def take_lease(
        self,
        conn: asyncpg.Connection,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        owner: uuid.UUID,
        seconds: float,
    ) -> bool:
        return await Purchases(conn).take_lease(company_id, purchase_id, owner, seconds)

    async def renew_leases(
        self,
        conn: asyncpg.Connection,
        leases: Sequence[tuple[PurchaseKey, uuid.UUID]],
        seconds: float,
    ) -> list[uuid.UUID]:
        return await Purchases(conn).renew_leases(leases, seconds)

    async def drop_lease(
        self,
        conn: asyncpg.Connection,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        owner: uuid.UUID,
    ) -> None:
        await Purchases(conn).drop_lease(company_id, purchase_id, owner)
