"""The revisions that key every table by company keep existing data working: a database
with rows in every service's tables, written at the revisions before, is migrated to head;
no row is lost, the office owners are filled in, and the services' own statements then
read and change those rows (a free unit handed out, a hold's units restored, a purchase
moved on), each by its company only."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from libs.common import migrations
from libs.common.clock import DatabaseClock
from libs.common.database import create_pool, plain_url
from libs.common.outbox import PostgresOutbox
from services.billing.domain.purchase import Step
from services.billing.repository.plans import Plans
from services.billing.repository.purchases import Purchases
from services.credits.repository.ledger import LedgerRepository
from services.credits.repository.offices import OfficeRepository
from services.credits.repository.usage import UsageRepository
from services.pool.domain.history import NO_CAUSE
from services.pool.domain.model import HoldState, Office, PlanKind, Source, UnitState
from services.pool.repository.allocation import Allocations, Handout
from services.pool.repository.offices import Offices
from services.pool.repository.records import Holds
from services.pool.repository.units import Units
from services.pool.unit_of_work import SCHEMA
from services.provisioning.repository.licenses import Licenses
from tests.support import distribution
from tests.support.database import fresh_database

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Each service's last revision before its keys were made per company.
BEFORE = {"pool": "0003", "credits": "0001", "billing": "0003", "provisioning": "0002"}

A, B = uuid.uuid4(), uuid.uuid4()  # two companies
OFFICE_A, OFFICE_B = uuid.uuid4(), uuid.uuid4()
SPARE_A, HELD_A, SPARE_B = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
HOLD_A, RECEIPT_A = uuid.uuid4(), uuid.uuid4()
GRANT_A, USAGE_A = uuid.uuid4(), uuid.uuid4()
PLAN_A, QUOTE_A, PURCHASE_A, INVOICE_A = (uuid.uuid4() for _ in range(4))
USER_A, LICENSE_A, ADDON_A, UNIT_OF_USER = (uuid.uuid4() for _ in range(4))
NOW = datetime(2026, 1, 15, tzinfo=UTC)

POOL_ROWS = """
INSERT INTO pool.offices (office_id, company_id, currency, plan_kind)
    VALUES ('{office_a}', '{a}', 'USD', 'BUNDLE'), ('{office_b}', '{b}', 'USD', 'BUNDLE');
INSERT INTO pool.holds (hold_id, company_id, office_id, currency, license_type, state, quantity,
    expires_at, receipt_id, created_at, unit_ids)
    VALUES ('{hold_a}', '{a}', '{office_a}', 'USD', 'connect', 'PENDING', 1,
            '{now}'::timestamptz + interval '1 hour', '{receipt_a}', '{now}',
            ARRAY['{held_a}'::uuid]);
INSERT INTO pool.units (unit_id, company_id, office_id, currency, license_type, state,
    hold_id, held_from, created_at, updated_at)
    VALUES ('{spare_a}', '{a}', '{office_a}', 'USD', 'connect', 'SPARE', NULL, NULL,
            '{now}', '{now}'),
           ('{held_a}', '{a}', '{office_a}', 'USD', 'connect', 'HELD', '{hold_a}', 'SPARE',
            '{now}', '{now}'),
           ('{spare_b}', '{b}', '{office_b}', 'USD', 'connect', 'SPARE', NULL, NULL,
            '{now}', '{now}');
INSERT INTO pool.free_units (unit_id, company_id, currency, license_type, office_id, pooled)
    VALUES ('{spare_a}', '{a}', 'USD', 'connect', '{office_a}', false),
           ('{spare_b}', '{b}', 'USD', 'connect', '{office_b}', false);
INSERT INTO pool.receipts (receipt_id, company_id, office_id, currency, license_type,
    requested, taken, shortfall, passed_over, hold_id, created_at)
    VALUES ('{receipt_a}', '{a}', '{office_a}', 'USD', 'connect', 1, '[]', 0, '[]', '{hold_a}',
        '{now}');
INSERT INTO pool.pools (company_id, currency, enabled_at) VALUES ('{a}', 'USD', '{now}');
INSERT INTO pool.idempotency_keys (company_id, request_id, fingerprint) VALUES ('{a}', 'r1', '');
"""
CREDITS_ROWS = """
INSERT INTO credits.offices (office_id, company_id, currency, allowance, period_anchor,
    overage_policy, created_at, updated_at)
    VALUES ('{office_a}', '{a}', 'USD', 0, '{now}', 'ALLOW', '{now}', '{now}');
INSERT INTO credits.pooling (company_id, currency, enabled, updated_at)
    VALUES ('{a}', 'USD', false, '{now}');
INSERT INTO credits.ledger_accounts (company_id, currency, code, kind, office_id, balance,
    created_at)
    VALUES ('{a}', 'USD', 'issued', 'ISSUED', NULL, -100, '{now}'),
           ('{a}', 'USD', 'office', 'OFFICE_BALANCE', '{office_a}', 70, '{now}'),
           ('{a}', 'USD', 'consumed', 'CONSUMED', '{office_a}', 30, '{now}');
INSERT INTO credits.grants (grant_id, company_id, target, office_id, currency, amount, note,
    created_at) VALUES ('{grant_a}', '{a}', 'OFFICE_BALANCE', '{office_a}', 'USD', 100, 'seed',
        '{now}');
INSERT INTO credits.usage_records (usage_id, company_id, request_id, office_id, kind,
    currency, amount, occurred_at, period_start, period_end, from_allowance,
    from_office_balance, from_company_pool, from_ai_agent_credits, overage, recorded_at)
    VALUES ('{usage_a}', '{a}', 'u1', '{office_a}', 'CALLING', 'USD', 30, '{now}',
        '{now}'::timestamptz - interval '1 day',
            '{now}'::timestamptz + interval '1 day', 0, 30, 0, 0, 0, '{now}');
INSERT INTO credits.entries (company_id, currency, kind, debit_account_id, credit_account_id,
    amount, usage_id, grant_id, created_at)
    SELECT '{a}'::uuid, 'USD', 'GRANT', i.account_id, o.account_id, 100, NULL::uuid,
        '{grant_a}'::uuid, '{now}'::timestamptz
    FROM credits.ledger_accounts i, credits.ledger_accounts o
    WHERE i.code = 'issued' AND o.code = 'office'
    UNION ALL
    SELECT '{a}'::uuid, 'USD', 'USAGE', o.account_id, c.account_id, 30, '{usage_a}'::uuid,
        NULL::uuid, '{now}'::timestamptz
    FROM credits.ledger_accounts o, credits.ledger_accounts c
    WHERE o.code = 'office' AND c.code = 'consumed';
INSERT INTO credits.idempotency_keys (company_id, request_id, fingerprint)
    VALUES ('{a}', 'r1', '');
"""
BILLING_ROWS = """
INSERT INTO billing.plans (plan_id, company_id, office_id, kind, currency, prices, contracted,
    start_at, active, is_primary, created_at, updated_at)
    VALUES ('{plan_a}', '{a}', '{office_a}', 'BUNDLE', 'USD', '{{"connect": 1000}}', false,
        '{now}', true, true, '{now}', '{now}');
INSERT INTO billing.quotes (quote_id, company_id, office_id, license_type, quantity, restored,
    from_pool, new_units, plan_id, currency, unit_price, amount, cycle_start, cycle_end,
    quoted_at, expires_at)
    VALUES ('{quote_a}', '{a}', '{office_a}', 'connect', 1, 0, 0, 1, '{plan_a}', 'USD', 1000,
        1000, '{now}',
            '{now}'::timestamptz + interval '1 month', '{now}',
                '{now}'::timestamptz + interval '1 hour');
INSERT INTO billing.purchases (purchase_id, company_id, request_id, fingerprint, office_id,
    license_type, quantity, state, plan_id, currency, unit_price, cycle_start, cycle_end,
    period, purchased_at, step, quote_id)
    VALUES ('{purchase_a}', '{a}', 'p1', '', '{office_a}', 'connect', 1, 'PENDING', '{plan_a}',
        'USD', 1000, '{now}',
            '{now}'::timestamptz + interval '1 month', '2026-01', '{now}', 'CREATED', '{quote_a}');
INSERT INTO billing.invoices (invoice_id, company_id, period, snapshot_at, lines, charges,
    live_units, billed_units, balanced, created_at)
    VALUES ('{invoice_a}', '{a}', '2026-01', '{now}', '[]', '[]', 0, 0, true, '{now}');
INSERT INTO billing.idempotency_keys (company_id, request_id, fingerprint)
    VALUES ('{a}', 'r1', '');
"""
PROVISIONING_ROWS = """
INSERT INTO provisioning.users (user_id, company_id, office_id, display_name, email,
    license_type, license_unit_id, created_at, updated_at)
    VALUES ('{user_a}', '{a}', '{office_a}', 'Ada', 'ada@example.com', 'connect',
        '{unit_of_user}', '{now}', '{now}');
INSERT INTO provisioning.licenses (license_id, company_id, office_id, license_type, user_id,
    ext_key, number, created_at, updated_at)
    VALUES ('{license_a}', '{a}', '{office_a}', 'phone_system', '{user_a}', '100', '+15550100',
        '{now}', '{now}');
INSERT INTO provisioning.addons (addon_id, company_id, license_id, license_type, created_at)
    VALUES ('{addon_a}', '{a}', '{license_a}', 'recording', '{now}');
INSERT INTO provisioning.imports (company_id, import_id, office_id, fingerprint, state, stage,
    chunk_size, row_count, rows_reconfiguring, warnings, quote, units_total)
    VALUES ('{a}', 'i1', '{office_a}', '', 'SUCCEEDED', 'DONE', 100, 1, 0, '[]', '{{}}', 1);
INSERT INTO provisioning.import_rows (company_id, import_id, row_number, user_id, license_id,
    ext_key, number, new_addons) VALUES ('{a}', 'i1', 1, '{user_a}', '{license_a}', '100', NULL,
        '{{}}');
INSERT INTO provisioning.import_steps (company_id, import_id, attempt, step, license_type,
    hold_id, unit_ids, shortfall) VALUES ('{a}', 'i1', 1, 1, 'connect', NULL, '{{}}', 0);
INSERT INTO provisioning.pool_operations (company_id, request_id, fingerprint, attempt, step,
    kind, office_id, plan, lease_until)
    VALUES ('{a}', 'o1', '', '{hold_a}', 'RESERVING', 'assign', '{office_a}', '{{}}', '{now}');
INSERT INTO provisioning.idempotency_keys (company_id, request_id, fingerprint)
    VALUES ('{a}', 'r1', '');
"""


def migrate(url: str, service: str, revision: str) -> None:
    migrations.upgrade(url, ROOT / "services" / service / "migrations", service, revision)


VALUES = {
    "a": A,
    "b": B,
    "office_a": OFFICE_A,
    "office_b": OFFICE_B,
    "spare_a": SPARE_A,
    "held_a": HELD_A,
    "spare_b": SPARE_B,
    "hold_a": HOLD_A,
    "receipt_a": RECEIPT_A,
    "grant_a": GRANT_A,
    "usage_a": USAGE_A,
    "plan_a": PLAN_A,
    "quote_a": QUOTE_A,
    "purchase_a": PURCHASE_A,
    "invoice_a": INVOICE_A,
    "user_a": USER_A,
    "license_a": LICENSE_A,
    "addon_a": ADDON_A,
    "unit_of_user": UNIT_OF_USER,
    "now": NOW.isoformat(),
}


async def row_counts(conn: asyncpg.Connection) -> dict[str, int]:
    tables = await conn.fetch(
        "SELECT schemaname || '.' || tablename AS name FROM pg_tables"
        " WHERE schemaname = ANY($1::text[]) AND tablename <> 'alembic_version'",
        list(distribution.SCHEMAS),
    )
    return {
        t["name"]: await conn.fetchval(f"SELECT count(*) FROM {t['name']}")
        for t in tables
        if not t["name"].endswith(".office_owners")
    }


async def test_a_database_with_data_keeps_working_once_keyed_by_company(db_server: str) -> None:
    async with fresh_database(db_server) as url:
        for service, revision in BEFORE.items():
            await asyncio.to_thread(migrate, url, service, revision)
        conn = await asyncpg.connect(plain_url(url))
        try:
            # The old schema breaks the rule, and the check names where.
            old = await distribution.violations(conn)
            assert "pool.units: primary key units_pkey lacks company_id" in old
            assert (
                "provisioning.users: unique key users_license_unit_id_key lacks company_id" in old
            )
            for rows in (POOL_ROWS, CREDITS_ROWS, BILLING_ROWS, PROVISIONING_ROWS):
                await conn.execute(rows.format(**VALUES))
            before = await row_counts(conn)
        finally:
            await conn.close()

        for service in BEFORE:
            await asyncio.to_thread(migrate, url, service, "head")

        db = await create_pool(url, 1)  # the services' own connections (JSON codecs)
        try:
            async with db.acquire() as conn:
                await rows_keep_working(conn, before)
        finally:
            await db.close()


async def rows_keep_working(conn: asyncpg.Connection, before: dict[str, int]) -> None:
    assert await distribution.violations(conn) == []
    after = await row_counts(conn)
    assert {table: after[table] for table in before} == before  # tables added later aside
    assert [t for t, n in before.items() if n == 0] == []  # a row in every table
    await pool_rows_work(conn)
    await credits_rows_work(conn)
    await billing_rows_work(conn)
    await provisioning_rows_work(conn)


async def pool_rows_work(conn: asyncpg.Connection) -> None:
    offices = Offices(conn)
    assert await offices.owner(OFFICE_A) == A
    assert await offices.owner(OFFICE_B) == B
    # Another company cannot take an existing office id.
    assert await offices.put(Office(B, OFFICE_A, "USD", PlanKind.BUNDLE, False)) is None
    allocations = Allocations(conn, DatabaseClock(), PostgresOutbox(conn, SCHEMA))
    async with conn.transaction():
        # The free unit of company A is not company B's to hand out; A's is.
        wrong = [handout(SPARE_A, B, OFFICE_B)]
        assert await allocations.hand_out(wrong, NOW) == {}
        taken = await allocations.hand_out([handout(SPARE_A, A, OFFICE_A)], NOW)
        assert taken[SPARE_A].state is UnitState.ASSIGNED
        # The seeded hold still finds its unit, and puts it back on the free-list.
        hold = await Holds(conn).get(A, HOLD_A)
        assert hold is not None
        assert hold.unit_ids == (HELD_A,)
        await Holds(conn).restore_units(A, [HOLD_A], HoldState.RELEASED, NOW, NO_CAUSE)
        (unit,) = await Units(conn).by_id(A, [HELD_A])
        assert unit.state is UnitState.SPARE
        assert await Units(conn).by_id(B, [HELD_A]) == []
        assert (
            await conn.fetchval("SELECT count(*) FROM pool.free_units WHERE company_id = $1", A)
            == 1
        )


def handout(unit_id: uuid.UUID, company_id: uuid.UUID, office_id: uuid.UUID) -> Handout:
    """The unit handed out to the office, from its own spare units."""
    return Handout(
        unit_id, company_id, office_id, None, None, Source.OWN_SPARE, uuid.uuid4(), "request"
    )


async def credits_rows_work(conn: asyncpg.Connection) -> None:
    offices = OfficeRepository(conn)
    assert await offices.owner(OFFICE_A) == A
    assert await offices.has_ledger(A, OFFICE_A)
    assert not await offices.has_ledger(B, OFFICE_A)
    checked = await LedgerRepository(conn, DatabaseClock()).checked(A)
    assert len(checked) == 3
    assert all(c.account.balance == c.entries_sum for c in checked)
    usage = await UsageRepository(conn).get(A, USAGE_A)
    assert usage is not None
    assert usage.amount == 30


async def billing_rows_work(conn: asyncpg.Connection) -> None:
    plan = await Plans(conn).active(A, OFFICE_A)
    assert plan is not None
    assert plan.plan_id == PLAN_A
    purchases = Purchases(conn)
    assert await purchases.of_quote(B, QUOTE_A) is None
    purchase = await purchases.of_quote(A, QUOTE_A)
    assert purchase is not None
    assert purchase.purchase_id == PURCHASE_A
    assert await purchases.take_lease(A, PURCHASE_A, uuid.uuid4(), 60)
    await purchases.set_step(A, PURCHASE_A, Step.RESERVING)
    moved = await purchases.get(A, PURCHASE_A)
    assert moved is not None
    assert moved.step == Step.RESERVING
    # Two purchases of one quote are still refused (the key is now per company).
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            "INSERT INTO billing.purchases (purchase_id, company_id, request_id, fingerprint,"
            " office_id, license_type, quantity, state, plan_id, currency, unit_price,"
            " cycle_start, cycle_end, period, purchased_at, step, quote_id)"
            " SELECT $1, company_id, 'p2', fingerprint, office_id, license_type, quantity,"
            " state, plan_id, currency, unit_price, cycle_start, cycle_end, period,"
            " purchased_at, step, quote_id FROM billing.purchases WHERE purchase_id = $2",
            uuid.uuid4(),
            PURCHASE_A,
        )


async def provisioning_rows_work(conn: asyncpg.Connection) -> None:
    licenses = Licenses(conn)
    (found,) = await licenses.licenses_of_user(A, USER_A)
    assert found.license_id == LICENSE_A
    assert [a.license_type for a in found.addons] == ["recording"]
    assert await licenses.user_has_type(A, USER_A, "phone_system")
    assert not await licenses.user_has_type(B, USER_A, "phone_system")
    assert await licenses.licenses_of_user(B, USER_A) == []
