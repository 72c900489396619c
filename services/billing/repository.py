"""Every SQL statement of the billing service (schema `billing`), on raw asyncpg.

Instants that carry business meaning (plan times, purchase times, quote expiry) come from
the injectable clock as `coalesce($n, now())`. Leases of purchase drivers use the
database's real `now()`: they are about processes, not business time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import Connection as Conn

from services.billing.domain.model import (
    Cycle,
    Invoice,
    InvoiceLine,
    LineKind,
    Plan,
    PlanKind,
    Purchase,
    PurchaseCharge,
    PurchaseState,
    Quote,
    Reconciliation,
    Split,
)

PLAN_COLUMNS = """plan_id, company_id, office_id, kind, currency, prices, contracted, start_at,
    active, is_primary, created_at, updated_at"""
QUOTE_COLUMNS = """quote_id, company_id, office_id, license_type, quantity, restored, from_pool,
    new_units, plan_id, currency, unit_price, amount, cycle_start, cycle_end, quoted_at,
    hold_id, expires_at"""
PURCHASE_COLUMNS = """purchase_id, company_id, request_id, office_id, license_type, quantity,
    state, plan_id, currency, unit_price, cycle_start, cycle_end, purchased_at, attempt, step,
    quote_id, restored, from_pool, new_units, amount, hold_id, reserve_quantity, unit_ids,
    resolved_at,
    failure_kind, failure_reason, failure_message"""
INVOICE_COLUMNS = """invoice_id, company_id, period, snapshot_at, lines, charges, live_units,
    billed_units, balanced, terminated_units, terminations_done, created_at"""


def to_plan(row: asyncpg.Record) -> Plan:
    return Plan(
        plan_id=row["plan_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        kind=PlanKind(row["kind"]),
        currency=row["currency"],
        prices={str(k): int(v) for k, v in row["prices"].items()},
        contracted=row["contracted"],
        start_at=row["start_at"],
        active=row["active"],
        primary=row["is_primary"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_quote(row: asyncpg.Record) -> Quote:
    return Quote(
        quote_id=row["quote_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        license_type=row["license_type"],
        quantity=row["quantity"],
        split=Split(row["restored"], row["from_pool"], row["new_units"]),
        plan_id=row["plan_id"],
        currency=row["currency"],
        unit_price=row["unit_price"],
        amount=row["amount"],
        cycle=Cycle(row["cycle_start"], row["cycle_end"]),
        quoted_at=row["quoted_at"],
        hold_id=row["hold_id"],
        expires_at=row["expires_at"],
    )


def to_purchase(row: asyncpg.Record) -> Purchase:
    split = None
    if row["restored"] is not None:
        split = Split(row["restored"], row["from_pool"], row["new_units"])
    return Purchase(
        purchase_id=row["purchase_id"],
        company_id=row["company_id"],
        request_id=row["request_id"],
        office_id=row["office_id"],
        license_type=row["license_type"],
        quantity=row["quantity"],
        state=PurchaseState(row["state"]),
        plan_id=row["plan_id"],
        currency=row["currency"],
        unit_price=row["unit_price"],
        cycle=Cycle(row["cycle_start"], row["cycle_end"]),
        purchased_at=row["purchased_at"],
        attempt=row["attempt"],
        step=row["step"],
        quote_id=row["quote_id"],
        split=split,
        amount=row["amount"],
        hold_id=row["hold_id"],
        reserve_quantity=row["reserve_quantity"],
        unit_ids=tuple(row["unit_ids"]),
        resolved_at=row["resolved_at"],
        failure_kind=row["failure_kind"],
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
    )


def _line_json(line: InvoiceLine) -> dict[str, Any]:
    return {
        "kind": line.kind.value,
        "office_id": str(line.office_id) if line.office_id else None,
        "plan_id": str(line.plan_id) if line.plan_id else None,
        "currency": line.currency,
        "license_type": line.license_type,
        "assigned": line.assigned,
        "spare": line.spare,
        "removal_scheduled": line.removal_scheduled,
        "held": line.held,
        "pooled": line.pooled,
        "unit_price": line.unit_price,
    }


def _line(data: dict[str, Any]) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind(data["kind"]),
        office_id=uuid.UUID(data["office_id"]) if data["office_id"] else None,
        plan_id=uuid.UUID(data["plan_id"]) if data["plan_id"] else None,
        currency=data["currency"],
        license_type=data["license_type"],
        assigned=data["assigned"],
        spare=data["spare"],
        removal_scheduled=data["removal_scheduled"],
        held=data["held"],
        pooled=data["pooled"],
        unit_price=data["unit_price"],
    )


def _charge_json(charge: PurchaseCharge) -> dict[str, Any]:
    return {
        "purchase_id": str(charge.purchase_id),
        "office_id": str(charge.office_id),
        "plan_id": str(charge.plan_id),
        "license_type": charge.license_type,
        "currency": charge.currency,
        "new_units": charge.new_units,
        "amount": charge.amount,
        "purchased_at": charge.purchased_at.isoformat(),
    }


def _charge(data: dict[str, Any]) -> PurchaseCharge:
    return PurchaseCharge(
        purchase_id=uuid.UUID(data["purchase_id"]),
        office_id=uuid.UUID(data["office_id"]),
        plan_id=uuid.UUID(data["plan_id"]),
        license_type=data["license_type"],
        currency=data["currency"],
        new_units=data["new_units"],
        amount=data["amount"],
        purchased_at=datetime.fromisoformat(data["purchased_at"]),
    )


def to_invoice(row: asyncpg.Record) -> tuple[Invoice, bool]:
    """The invoice, and whether its removal terminations are done."""
    from services.billing.domain.invoicing import totals

    lines = tuple(_line(d) for d in row["lines"])
    charges = tuple(_charge(d) for d in row["charges"])
    invoice = Invoice(
        invoice_id=row["invoice_id"],
        company_id=row["company_id"],
        period=row["period"],
        snapshot_at=row["snapshot_at"],
        lines=lines,
        charges=charges,
        reconciliation=Reconciliation(row["live_units"], row["billed_units"], row["balanced"]),
        created_at=row["created_at"],
        terminated_units=row["terminated_units"],
        totals=totals(lines, charges),
    )
    return invoice, row["terminations_done"]


class BillingRepository:
    """The billing schema; every method runs on the caller's connection."""

    async def now(self, conn: Conn, clock_now: datetime | None) -> datetime:
        value: datetime = await conn.fetchval("SELECT coalesce($1::timestamptz, now())", clock_now)
        return value

    # --- idempotency (read side; claims go through libs.common.idempotency) ---------------

    async def stored_response(
        self, conn: Conn, company_id: uuid.UUID, request_id: str
    ) -> tuple[bytes, bytes | None] | None:
        """(fingerprint, response) of a request_id already used, or None."""
        row = await conn.fetchrow(
            "SELECT fingerprint, response FROM billing.idempotency_keys"
            " WHERE company_id = $1 AND request_id = $2",
            company_id,
            request_id,
        )
        if row is None:
            return None
        response = row["response"]
        return bytes(row["fingerprint"]), bytes(response) if response is not None else None

    # --- plans ----------------------------------------------------------------------------

    async def insert_plan(self, conn: Conn, plan: Plan) -> Plan:
        row = await conn.fetchrow(
            f"""
            INSERT INTO billing.plans ({PLAN_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
            RETURNING {PLAN_COLUMNS}
            """,
            plan.plan_id,
            plan.company_id,
            plan.office_id,
            plan.kind.value,
            plan.currency,
            dict(plan.prices),
            plan.contracted,
            plan.start_at,
            plan.active,
            plan.primary,
            plan.created_at,
        )
        return to_plan(row)

    async def update_plan(self, conn: Conn, plan: Plan) -> Plan:
        row = await conn.fetchrow(
            f"""
            UPDATE billing.plans SET kind = $3, prices = $4, contracted = $5, active = $6,
                is_primary = $7, updated_at = $8
            WHERE company_id = $1 AND plan_id = $2
            RETURNING {PLAN_COLUMNS}
            """,
            plan.company_id,
            plan.plan_id,
            plan.kind.value,
            dict(plan.prices),
            plan.contracted,
            plan.active,
            plan.primary,
            plan.updated_at,
        )
        return to_plan(row)

    async def clear_primary(
        self, conn: Conn, company_id: uuid.UUID, office_id: uuid.UUID, now: datetime
    ) -> None:
        """One primary office per company: setting one clears the others."""
        await conn.execute(
            "UPDATE billing.plans SET is_primary = false, updated_at = $3"
            " WHERE company_id = $1 AND is_primary AND office_id <> $2",
            company_id,
            office_id,
            now,
        )

    async def get_plan(self, conn: Conn, company_id: uuid.UUID, plan_id: uuid.UUID) -> Plan | None:
        row = await conn.fetchrow(
            f"SELECT {PLAN_COLUMNS} FROM billing.plans WHERE company_id = $1 AND plan_id = $2",
            company_id,
            plan_id,
        )
        return to_plan(row) if row else None

    async def active_plan(
        self, conn: Conn, company_id: uuid.UUID, office_id: uuid.UUID
    ) -> Plan | None:
        row = await conn.fetchrow(
            f"SELECT {PLAN_COLUMNS} FROM billing.plans"
            " WHERE company_id = $1 AND office_id = $2 AND active",
            company_id,
            office_id,
        )
        return to_plan(row) if row else None

    async def office_owner(self, conn: Conn, office_id: uuid.UUID) -> uuid.UUID | None:
        """The company whose plans name the office (None: no plan names it)."""
        owner: uuid.UUID | None = await conn.fetchval(
            "SELECT company_id FROM billing.plans WHERE office_id = $1 LIMIT 1", office_id
        )
        return owner

    async def plans_of_company(
        self, conn: Conn, company_id: uuid.UUID, currency: str | None = None
    ) -> list[Plan]:
        rows = await conn.fetch(
            f"SELECT {PLAN_COLUMNS} FROM billing.plans"
            " WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)"
            " ORDER BY start_at, plan_id::text",
            company_id,
            currency,
        )
        return [to_plan(r) for r in rows]

    async def list_plans(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        active_only: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Plan]:
        rows = await conn.fetch(
            f"""
            SELECT {PLAN_COLUMNS} FROM billing.plans
            WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
              AND ($3::text IS NULL OR currency = $3) AND (NOT $4 OR active)
              AND ($5::timestamptz IS NULL OR (start_at, plan_id::text) > ($5, $6::text))
            ORDER BY start_at, plan_id::text LIMIT $7
            """,
            company_id,
            office_id,
            currency,
            active_only,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_plan(r) for r in rows]

    # --- quotes ---------------------------------------------------------------------------

    async def insert_quote(self, conn: Conn, quote: Quote) -> None:
        await conn.execute(
            f"""
            INSERT INTO billing.quotes ({QUOTE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
            """,
            quote.quote_id,
            quote.company_id,
            quote.office_id,
            quote.license_type,
            quote.quantity,
            quote.split.restored,
            quote.split.from_pool,
            quote.split.new,
            quote.plan_id,
            quote.currency,
            quote.unit_price,
            quote.amount,
            quote.cycle.start,
            quote.cycle.end,
            quote.quoted_at,
            quote.hold_id,
            quote.expires_at,
        )

    async def get_quote(
        self, conn: Conn, company_id: uuid.UUID, quote_id: uuid.UUID
    ) -> Quote | None:
        row = await conn.fetchrow(
            f"SELECT {QUOTE_COLUMNS} FROM billing.quotes WHERE company_id = $1 AND quote_id = $2",
            company_id,
            quote_id,
        )
        return to_quote(row) if row else None

    # --- purchases ------------------------------------------------------------------------

    async def insert_purchase(
        self,
        conn: Conn,
        purchase: Purchase,
        fingerprint: bytes,
        owner: uuid.UUID,
        lease_seconds: float,
    ) -> bool:
        """Writes a new PENDING purchase leased to its caller (`owner`); False if the
        request_id (or the quote) is taken."""
        row = await conn.fetchrow(
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
            purchase.step,
            purchase.quote_id,
            owner,
            lease_seconds,
        )
        return row is not None

    async def purchase_by_request(
        self, conn: Conn, company_id: uuid.UUID, request_id: str
    ) -> tuple[Purchase, bytes] | None:
        row = await conn.fetchrow(
            f"SELECT {PURCHASE_COLUMNS}, fingerprint FROM billing.purchases"
            " WHERE company_id = $1 AND request_id = $2",
            company_id,
            request_id,
        )
        return (to_purchase(row), bytes(row["fingerprint"])) if row else None

    async def purchase_of_quote(self, conn: Conn, quote_id: uuid.UUID) -> Purchase | None:
        row = await conn.fetchrow(
            f"SELECT {PURCHASE_COLUMNS} FROM billing.purchases WHERE quote_id = $1", quote_id
        )
        return to_purchase(row) if row else None

    async def get_purchase(
        self, conn: Conn, company_id: uuid.UUID, purchase_id: uuid.UUID
    ) -> Purchase | None:
        row = await conn.fetchrow(
            f"SELECT {PURCHASE_COLUMNS} FROM billing.purchases"
            " WHERE company_id = $1 AND purchase_id = $2",
            company_id,
            purchase_id,
        )
        return to_purchase(row) if row else None

    async def list_purchases(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        period: str | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Purchase]:
        rows = await conn.fetch(
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

    async def take_lease(
        self, conn: Conn, purchase_id: uuid.UUID, owner: uuid.UUID, seconds: float
    ) -> bool:
        """Makes `owner` the purchase's only driver until the lease ends (or is renewed)."""
        row = await conn.fetchrow(
            """
            UPDATE billing.purchases SET lease_owner = $2,
                lease_until = now() + make_interval(secs => $3)
            WHERE purchase_id = $1 AND state = 'PENDING'
              AND (lease_until IS NULL OR lease_until < now())
            RETURNING purchase_id
            """,
            purchase_id,
            owner,
            seconds,
        )
        return row is not None

    async def renew_leases(
        self, conn: Conn, leases: Sequence[tuple[uuid.UUID, uuid.UUID]], seconds: float
    ) -> list[uuid.UUID]:
        """Extends the leases (purchase_id, owner) still held by their owner; returns the
        owners renewed."""
        rows = await conn.fetch(
            """
            UPDATE billing.purchases p SET lease_until = now() + make_interval(secs => $3)
            FROM unnest($1::uuid[], $2::uuid[]) AS held(purchase_id, owner)
            WHERE p.purchase_id = held.purchase_id AND p.lease_owner = held.owner
              AND p.state = 'PENDING'
            RETURNING p.lease_owner
            """,
            [purchase_id for purchase_id, _ in leases],
            [owner for _, owner in leases],
            seconds,
        )
        return [r["lease_owner"] for r in rows]

    async def drop_lease(self, conn: Conn, purchase_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Ends `owner`'s lease (a successor's is left alone)."""
        await conn.execute(
            "UPDATE billing.purchases SET lease_until = NULL, lease_owner = NULL"
            " WHERE purchase_id = $1 AND lease_owner = $2",
            purchase_id,
            owner,
        )

    async def restart_failed(
        self, conn: Conn, purchase_id: uuid.UUID, owner: uuid.UUID, seconds: float
    ) -> bool:
        """A purchase that failed for a passing reason runs again as a new attempt,
        leased to `owner`."""
        row = await conn.fetchrow(
            """
            UPDATE billing.purchases SET state = 'PENDING', attempt = attempt + 1,
                step = 'CREATED', restored = NULL, from_pool = NULL, new_units = NULL,
                hold_id = NULL, reserve_quantity = NULL, resolved_at = NULL,
                failure_kind = NULL, failure_reason = NULL, failure_message = NULL,
                lease_owner = $2, lease_until = now() + make_interval(secs => $3)
            WHERE purchase_id = $1 AND state = 'FAILED'
            RETURNING purchase_id
            """,
            purchase_id,
            owner,
            seconds,
        )
        return row is not None

    async def set_step(self, conn: Conn, purchase_id: uuid.UUID, step: str) -> None:
        await conn.execute(
            "UPDATE billing.purchases SET step = $2 WHERE purchase_id = $1 AND state = 'PENDING'",
            purchase_id,
            step,
        )

    async def begin_undo(
        self,
        conn: Conn,
        purchase_id: uuid.UUID,
        step: str,
        kind: str,
        reason: str,
        message: str,
    ) -> None:
        """Marks a purchase as being undone, and why (kept for its FAILED outcome)."""
        await conn.execute(
            """
            UPDATE billing.purchases SET step = $2, failure_kind = $3, failure_reason = $4,
                failure_message = $5
            WHERE purchase_id = $1 AND state = 'PENDING'
            """,
            purchase_id,
            step,
            kind,
            reason,
            message,
        )

    async def set_reserving(self, conn: Conn, purchase_id: uuid.UUID, quantity: int) -> None:
        """Step RESERVING, with the quantity asked (a replay must ask the same)."""
        await conn.execute(
            "UPDATE billing.purchases SET step = 'RESERVING', reserve_quantity = $2"
            " WHERE purchase_id = $1 AND state = 'PENDING'",
            purchase_id,
            quantity,
        )

    async def set_split(
        self,
        conn: Conn,
        purchase_id: uuid.UUID,
        step: str,
        split: Split,
        hold_id: uuid.UUID | None,
    ) -> None:
        await conn.execute(
            """
            UPDATE billing.purchases SET step = $2, restored = $3, from_pool = $4,
                new_units = $5, hold_id = $6
            WHERE purchase_id = $1 AND state = 'PENDING'
            """,
            purchase_id,
            step,
            split.restored,
            split.from_pool,
            split.new,
            hold_id,
        )

    async def complete(
        self,
        conn: Conn,
        purchase_id: uuid.UUID,
        amount: int,
        unit_ids: Sequence[uuid.UUID],
        now: datetime,
    ) -> Purchase | None:
        """Records the charge and completes the purchase (one statement)."""
        row = await conn.fetchrow(
            f"""
            UPDATE billing.purchases SET state = 'COMPLETED', step = 'DONE', amount = $2,
                unit_ids = $3, resolved_at = $4, lease_until = NULL
            WHERE purchase_id = $1 AND state = 'PENDING'
            RETURNING {PURCHASE_COLUMNS}
            """,
            purchase_id,
            amount,
            list(unit_ids),
            now,
        )
        return to_purchase(row) if row else None

    async def fail(
        self,
        conn: Conn,
        purchase_id: uuid.UUID,
        kind: str,
        reason: str,
        message: str,
        now: datetime,
    ) -> Purchase | None:
        row = await conn.fetchrow(
            f"""
            UPDATE billing.purchases SET state = 'FAILED', step = 'UNDONE', amount = 0,
                resolved_at = $5, failure_kind = $2, failure_reason = $3, failure_message = $4,
                lease_until = NULL
            WHERE purchase_id = $1 AND state = 'PENDING'
            RETURNING {PURCHASE_COLUMNS}
            """,
            purchase_id,
            kind,
            reason,
            message,
            now,
        )
        return to_purchase(row) if row else None

    async def interrupted_purchases(self, conn: Conn, limit: int) -> list[tuple[uuid.UUID, str]]:
        """PENDING purchases whose driver's lease ended: (company_id, request_id)."""
        rows = await conn.fetch(
            """
            SELECT company_id, request_id FROM billing.purchases
            WHERE state = 'PENDING' AND (lease_until IS NULL OR lease_until < now())
            ORDER BY lease_until NULLS FIRST LIMIT $1
            """,
            limit,
        )
        return [(r["company_id"], r["request_id"]) for r in rows]

    async def charges_of_period(
        self, conn: Conn, company_id: uuid.UUID, period: str
    ) -> list[PurchaseCharge]:
        rows = await conn.fetch(
            """
            SELECT purchase_id, office_id, plan_id, license_type, currency, new_units, amount,
                purchased_at
            FROM billing.purchases
            WHERE company_id = $1 AND period = $2 AND state = 'COMPLETED' AND new_units > 0
            ORDER BY purchased_at, purchase_id
            """,
            company_id,
            period,
        )
        return [
            PurchaseCharge(
                r["purchase_id"],
                r["office_id"],
                r["plan_id"],
                r["license_type"],
                r["currency"],
                r["new_units"],
                r["amount"],
                r["purchased_at"],
            )
            for r in rows
        ]

    async def pending_in_period(self, conn: Conn, company_id: uuid.UUID, period: str) -> int:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM billing.purchases"
            " WHERE company_id = $1 AND period = $2 AND state = 'PENDING'",
            company_id,
            period,
        )
        return count

    # --- invoices -------------------------------------------------------------------------

    async def insert_invoice(self, conn: Conn, invoice: Invoice) -> bool:
        row = await conn.fetchrow(
            f"""
            INSERT INTO billing.invoices ({INVOICE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, false, $10)
            ON CONFLICT (company_id, period) DO NOTHING
            RETURNING invoice_id
            """,
            invoice.invoice_id,
            invoice.company_id,
            invoice.period,
            invoice.snapshot_at,
            [_line_json(line) for line in invoice.lines],
            [_charge_json(c) for c in invoice.charges],
            invoice.reconciliation.live_units,
            invoice.reconciliation.billed_units,
            invoice.reconciliation.balanced,
            invoice.created_at,
        )
        return row is not None

    async def invoice_of_period(
        self, conn: Conn, company_id: uuid.UUID, period: str
    ) -> tuple[Invoice, bool] | None:
        row = await conn.fetchrow(
            f"SELECT {INVOICE_COLUMNS} FROM billing.invoices WHERE company_id = $1 AND period = $2",
            company_id,
            period,
        )
        return to_invoice(row) if row else None

    async def get_invoice(
        self, conn: Conn, company_id: uuid.UUID, invoice_id: uuid.UUID
    ) -> Invoice | None:
        row = await conn.fetchrow(
            f"SELECT {INVOICE_COLUMNS} FROM billing.invoices"
            " WHERE company_id = $1 AND invoice_id = $2",
            company_id,
            invoice_id,
        )
        return to_invoice(row)[0] if row else None

    async def list_invoices(
        self, conn: Conn, company_id: uuid.UUID, before: str | None, limit: int
    ) -> list[Invoice]:
        rows = await conn.fetch(
            f"""
            SELECT {INVOICE_COLUMNS} FROM billing.invoices
            WHERE company_id = $1 AND ($2::text IS NULL OR period < $2)
            ORDER BY period DESC LIMIT $3
            """,
            company_id,
            before,
            limit,
        )
        return [to_invoice(r)[0] for r in rows]

    async def terminations_done(self, conn: Conn, invoice_id: uuid.UUID, count: int) -> None:
        await conn.execute(
            "UPDATE billing.invoices SET terminated_units = $2, terminations_done = true"
            " WHERE invoice_id = $1 AND NOT terminations_done",
            invoice_id,
            count,
        )
