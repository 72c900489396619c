"""Billing's revision 0004 against real PostgreSQL: a charge already on an invoice is marked
as carried by it, so no later invoice takes it again; a completed charge no invoice holds
(made after its period's invoice, before charges could be carried) is left for the next
invoice to carry."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.config import Config

from libs.common.database import plain_url, sqlalchemy_url
from tests.support.database import fresh_database

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "billing" / "migrations"
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


def upgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = sqlalchemy_url(url)
    config.attributes["schema"] = "billing"
    command.upgrade(config, revision)


async def completed_purchase(
    conn: asyncpg.Connection, company_id: uuid.UUID, plan_id: uuid.UUID
) -> uuid.UUID:
    purchase_id = uuid.uuid4()
    await conn.execute(
        """
        INSERT INTO billing.purchases (purchase_id, company_id, request_id, fingerprint,
            office_id, license_type, quantity, state, plan_id, currency, unit_price,
            cycle_start, cycle_end, period, purchased_at, step, restored, from_pool,
            new_units, amount, resolved_at)
        VALUES ($1, $2, $3, '\\x00', $4, 'connect', 1, 'COMPLETED', $5, 'USD', 1000,
            $6::timestamptz, $6::timestamptz + interval '1 month', '2026-01', $6, 'DONE',
            0, 0, 1, 500, $6)
        """,
        purchase_id,
        company_id,
        str(purchase_id),
        uuid.uuid4(),
        plan_id,
        JAN_1,
    )
    return purchase_id


async def test_charges_on_an_invoice_are_marked_and_the_others_left_to_carry(
    db_server: str,
) -> None:
    async with fresh_database(db_server) as url:
        await asyncio.to_thread(upgrade, url, "0003")
        company_id, plan_id = uuid.uuid4(), uuid.uuid4()
        conn = await asyncpg.connect(plain_url(url))
        try:
            await conn.execute(
                "INSERT INTO billing.plans VALUES ($1, $2, $3, 'BUNDLE', 'USD', '{}', false,"
                " $4, true, true, $4, $4)",
                plan_id,
                company_id,
                uuid.uuid4(),
                JAN_1,
            )
            invoiced = await completed_purchase(conn, company_id, plan_id)
            missed = await completed_purchase(conn, company_id, plan_id)
            invoice_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO billing.invoices (invoice_id, company_id, period, snapshot_at,"
                " lines, charges, live_units, billed_units, balanced, created_at)"
                " VALUES ($1, $2, '2026-01', $3, '[]', $4::jsonb, 0, 0, true, $3)",
                invoice_id,
                company_id,
                JAN_1,
                json.dumps([{"purchase_id": str(invoiced)}]),
            )
            await asyncio.to_thread(upgrade, url, "head")
            rows = await conn.fetch("SELECT purchase_id, invoice_id FROM billing.purchases")
        finally:
            await conn.close()
        assert {r["purchase_id"]: r["invoice_id"] for r in rows} == {
            invoiced: invoice_id,
            missed: None,
        }
