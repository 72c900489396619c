"""Purchases: the durable record of each purchase saga, its step, and its driver's lease.

Every statement that moves a purchase on applies only while it is PENDING: a purchase
settled (COMPLETED or FAILED) keeps its outcome."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from libs.common.errors import DomainError
from services.billing.domain import cycles
from services.billing.domain.model import Purchase, PurchaseCharge, Split
from services.billing.domain.purchase import Step
from services.billing.repository.rows import PURCHASE_COLUMNS, to_purchase

# A purchase is found by its company and its id.
PurchaseKey = tuple[uuid.UUID, uuid.UUID]


class Purchases:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def insert(
        self, purchase: Purchase, fingerprint: bytes, owner: uuid.UUID, lease_seconds: float
    ) -> bool:
        """Writes a new PENDING purchase leased to its caller (`owner`); False if the
        request_id (or the quote) is taken."""
        row = await self._conn.fetchrow(
            """
            INSERT INTO billing.purchases (purchase_id, company_id, request_id, fingerprint,
                office_id, license_type, quantity, state, plan_id, currency, unit_price,
                cycle_start, cycle_end, period, purchased_at, step, quote_id, lease_owner,
                lease_until)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', $8, $9, $10, $11, $12, $13, $14, $15,
                $16, $17, now() + make_interval(secs => $18))
            ON CONFLICT DO NOTHING
            RETURNING purchase_id
            """,
            purchase.purchase_id,
            purchase.company_id,
            purchase.request_id,
            fingerprint,
            purchase.office_id,
            purchase.license_type,
            purchase.quantity,
            purchase.plan_id,
            purchase.currency,
            purchase.unit_price,
            purchase.cycle.start,
            purchase.cycle.end,
            purchase.cycle.start.strftime("%Y-%m"),
            purchase.purchased_at,
            str(purchase.step),
            purchase.quote_id,
            owner,
            lease_seconds,
        )
        return row is not None

    async def by_request(
        self, company_id: uuid.UUID, request_id: str
    ) -> tuple[Purchase, bytes] | None:
        """The purchase of a request_id, and its request's fingerprint."""
        row = await self._conn.fetchrow(
            f"SELECT {PURCHASE_COLUMNS}, fingerprint FROM billing.purchases"
            " WHERE company_id = $1 AND request_id = $2",
            company_id,
            request_id,
        )
        return (to_purchase(row), bytes(row["fingerprint"])) if row else None

    async def of_quote(self, company_id: uuid.UUID, quote_id: uuid.UUID) -> Purchase | None:
        row = await self._conn.fetchrow(
            f"SELECT {PURCHASE_COLUMNS} FROM billing.purchases"
            " WHERE company_id = $1 AND quote_id = $2",
            company_id,
            quote_id,
        )
        return to_purchase(row) if row else None

    async def get(self, company_id: uuid.UUID, purchase_id: uuid.UUID) -> Purchase | None:
        row = await self._conn.fetchrow(
            f"SELECT {PURCHASE_COLUMNS} FROM billing.purchases"
            " WHERE company_id = $1 AND purchase_id = $2",
            company_id,
            purchase_id,
        )
        return to_purchase(row) if row else None

    async def page(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        period: str | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Purchase]:
        rows = await self._conn.fetch(
            f"""
            SELECT {PURCHASE_COLUMNS} FROM billing.purchases
            WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
              AND ($3::text IS NULL OR period = $3)
              AND ($4::timestamptz IS NULL OR (purchased_at, purchase_id) < ($4, $5::uuid))
            ORDER BY purchased_at DESC, purchase_id DESC LIMIT $6
            """,
            company_id,
            office_id,
            period,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return [to_purchase(r) for r in rows]

    # --- the driver's lease ---------------------------------------------------------------

    async def take_lease(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, owner: uuid.UUID, seconds: float
    ) -> bool:
        """Makes `owner` the purchase's only driver until the lease ends (or is renewed)."""
        row = await self._conn.fetchrow(
            """
            UPDATE billing.purchases SET lease_owner = $2,
                lease_until = now() + make_interval(secs => $3)
            WHERE company_id = $4 AND purchase_id = $1 AND state = 'PENDING'
              AND (lease_until IS NULL OR lease_until < now())
            RETURNING purchase_id
            """,
            purchase_id,
            owner,
            seconds,
            company_id,
        )
        return row is not None

    async def renew_leases(
        self, leases: Sequence[tuple[PurchaseKey, uuid.UUID]], seconds: float
    ) -> list[uuid.UUID]:
        """Extends the leases ((company_id, purchase_id), owner) still held by their owner;
        returns the owners renewed."""
        rows = await self._conn.fetch(
            """
            UPDATE billing.purchases p SET lease_until = now() + make_interval(secs => $4)
            FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS held(company_id, purchase_id, owner)
            WHERE p.company_id = held.company_id AND p.purchase_id = held.purchase_id
              AND p.lease_owner = held.owner AND p.state = 'PENDING'
            RETURNING p.lease_owner
            """,
            [company_id for (company_id, _), _ in leases],
            [purchase_id for (_, purchase_id), _ in leases],
            [owner for _, owner in leases],
            seconds,
        )
        return [r["lease_owner"] for r in rows]

    async def drop_lease(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, owner: uuid.UUID
    ) -> None:
        """Ends `owner`'s lease (a successor's is left alone)."""
        await self._conn.execute(
            "UPDATE billing.purchases SET lease_until = NULL, lease_owner = NULL"
            " WHERE company_id = $3 AND purchase_id = $1 AND lease_owner = $2",
            purchase_id,
            owner,
            company_id,
        )

    async def restart_failed(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, owner: uuid.UUID, seconds: float
    ) -> Purchase | None:
        """A purchase that failed for a passing reason runs again as a new attempt,
        leased to `owner` (None: it is not FAILED any more)."""
        row = await self._conn.fetchrow(
            f"""
            UPDATE billing.purchases SET state = 'PENDING', attempt = attempt + 1,
                step = 'CREATED', restored = NULL, from_pool = NULL, new_units = NULL,
                hold_id = NULL, reserve_quantity = NULL, unit_ids = '{{}}', resolved_at = NULL,
                failure_kind = NULL, failure_reason = NULL, failure_message = NULL,
                lease_owner = $2, lease_until = now() + make_interval(secs => $3)
            WHERE company_id = $4 AND purchase_id = $1 AND state = 'FAILED'
            RETURNING {PURCHASE_COLUMNS}
            """,
            purchase_id,
            owner,
            seconds,
            company_id,
        )
        return to_purchase(row) if row else None

    # --- the saga's steps -----------------------------------------------------------------

    async def set_step(self, company_id: uuid.UUID, purchase_id: uuid.UUID, step: Step) -> None:
        await self._conn.execute(
            "UPDATE billing.purchases SET step = $2"
            " WHERE company_id = $3 AND purchase_id = $1 AND state = 'PENDING'",
            purchase_id,
            str(step),
            company_id,
        )

    async def begin_undo(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, step: Step, error: DomainError
    ) -> None:
        """Marks a purchase as being undone, and why (kept for its FAILED outcome)."""
        await self._conn.execute(
            """
            UPDATE billing.purchases SET step = $2, failure_kind = $3, failure_reason = $4,
                failure_message = $5
            WHERE company_id = $6 AND purchase_id = $1 AND state = 'PENDING'
            """,
            purchase_id,
            str(step),
            error.kind.value,
            error.reason,
            error.message,
            company_id,
        )

    async def past_pivot(self, company_id: uuid.UUID, purchase_id: uuid.UUID) -> None:
        """An undo found the hold committed: the purchase goes on from the commit."""
        await self._conn.execute(
            """
            UPDATE billing.purchases SET step = $2, failure_kind = NULL, failure_reason = NULL,
                failure_message = NULL
            WHERE company_id = $3 AND purchase_id = $1 AND state = 'PENDING'
            """,
            purchase_id,
            str(Step.COMMITTING),
            company_id,
        )

    async def set_reserving(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        quantity: int,
        restored: Sequence[uuid.UUID],
    ) -> None:
        """Step RESERVING, with the quantity asked (a replay must ask the same) and the
        units restored before it."""
        await self._conn.execute(
            """
            UPDATE billing.purchases SET step = $2, reserve_quantity = $3, restored = $4,
                unit_ids = $5
            WHERE company_id = $6 AND purchase_id = $1 AND state = 'PENDING'
            """,
            purchase_id,
            str(Step.RESERVING),
            quantity,
            len(restored),
            list(restored),
            company_id,
        )

    async def set_split(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        step: Step,
        split: Split,
        hold_id: uuid.UUID | None,
        unit_ids: Sequence[uuid.UUID],
    ) -> None:
        """Where the units come from, the hold to commit, and the units so far."""
        await self._conn.execute(
            """
            UPDATE billing.purchases SET step = $2, restored = $3, from_pool = $4,
                new_units = $5, hold_id = $6, unit_ids = $7
            WHERE company_id = $8 AND purchase_id = $1 AND state = 'PENDING'
            """,
            purchase_id,
            str(step),
            split.restored,
            split.from_pool,
            split.new,
            hold_id,
            list(unit_ids),
            company_id,
        )

    async def set_committed(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        step: Step,
        unit_ids: Sequence[uuid.UUID],
    ) -> None:
        """Past the pivot, with the units restored and committed from the pool."""
        await self._conn.execute(
            "UPDATE billing.purchases SET step = $2, unit_ids = $3"
            " WHERE company_id = $4 AND purchase_id = $1 AND state = 'PENDING'",
            purchase_id,
            str(step),
            list(unit_ids),
            company_id,
        )

    async def complete(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        split: Split,
        amount: int,
        unit_ids: Sequence[uuid.UUID],
        now: datetime,
    ) -> Purchase | None:
        """Records the split and the charge and completes the purchase (one statement)."""
        row = await self._conn.fetchrow(
            f"""
            UPDATE billing.purchases SET state = 'COMPLETED', step = $5, amount = $2,
                unit_ids = $3, resolved_at = $4, lease_until = NULL, restored = $6,
                from_pool = $7, new_units = $8
            WHERE company_id = $9 AND purchase_id = $1 AND state = 'PENDING'
            RETURNING {PURCHASE_COLUMNS}
            """,
            purchase_id,
            amount,
            list(unit_ids),
            now,
            str(Step.DONE),
            split.restored,
            split.from_pool,
            split.new,
            company_id,
        )
        return to_purchase(row) if row else None

    async def fail(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, error: DomainError, now: datetime
    ) -> Purchase | None:
        """The purchase FAILED for `error`: nothing charged, no unit kept."""
        row = await self._conn.fetchrow(
            f"""
            UPDATE billing.purchases SET state = 'FAILED', step = $6, amount = 0,
                unit_ids = '{{}}', resolved_at = $5, failure_kind = $2, failure_reason = $3,
                failure_message = $4, lease_until = NULL
            WHERE company_id = $7 AND purchase_id = $1 AND state = 'PENDING'
            RETURNING {PURCHASE_COLUMNS}
            """,
            purchase_id,
            error.kind.value,
            error.reason,
            error.message,
            now,
            str(Step.UNDONE),
            company_id,
        )
        return to_purchase(row) if row else None

    async def interrupted(self, limit: int) -> list[tuple[uuid.UUID, str]]:
        """PENDING purchases whose driver's lease ended: (company_id, request_id)."""
        rows = await self._conn.fetch(
            """
            SELECT company_id, request_id FROM billing.purchases
            WHERE state = 'PENDING' AND (lease_until IS NULL OR lease_until < now())
            ORDER BY lease_until NULLS FIRST LIMIT $1
            """,
            limit,
        )
        return [(r["company_id"], r["request_id"]) for r in rows]

    # --- what invoices read ---------------------------------------------------------------

    async def claim_charges(
        self, company_id: uuid.UUID, period: str, invoice_id: uuid.UUID, live_at: datetime
    ) -> list[PurchaseCharge]:
        """The completed charges that no invoice carries yet, now carried by `invoice_id`
        (a row lock makes two invoices' claims exclusive): those of the period or an
        earlier one, and those of the next period completed by `live_at` (an instant read
        before the invoice's snapshot: their new units are in it)."""
        rows = await self._conn.fetch(
            """
            UPDATE billing.purchases SET invoice_id = $3
            WHERE company_id = $1 AND state = 'COMPLETED' AND new_units > 0
              AND invoice_id IS NULL
              AND period <= $4 AND (period <= $2 OR resolved_at <= $5)
            RETURNING purchase_id, office_id, plan_id, license_type, currency, new_units,
                amount, purchased_at, period, unit_price
            """,
            company_id,
            period,
            invoice_id,
            cycles.next_period(period),
            live_at,
        )
        charges = [
            PurchaseCharge(
                r["purchase_id"],
                r["office_id"],
                r["plan_id"],
                r["license_type"],
                r["currency"],
                r["new_units"],
                r["amount"],
                r["purchased_at"],
                r["period"],
                r["unit_price"],
            )
            for r in rows
        ]
        return sorted(charges, key=lambda c: (c.purchased_at, c.purchase_id))

    async def adding_unclaimed(self, company_id: uuid.UUID, period: str) -> int:
        """Purchases of the period whose new units may be in a pool snapshot while no
        invoice carries their charge: adding them (PENDING at ADDING), or completed and
        unclaimed."""
        count: int = await self._conn.fetchval(
            """
            SELECT count(*) FROM billing.purchases
            WHERE company_id = $1 AND period = $2 AND new_units > 0 AND invoice_id IS NULL
              AND (state = 'COMPLETED' OR (state = 'PENDING' AND step = 'ADDING'))
            """,
            company_id,
            period,
        )
        return count

    async def pending_in_period(self, company_id: uuid.UUID, period: str) -> int:
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM billing.purchases"
            " WHERE company_id = $1 AND period = $2 AND state = 'PENDING'",
            company_id,
            period,
        )
        return count
