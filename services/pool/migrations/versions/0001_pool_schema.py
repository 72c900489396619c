"""Pool schema: offices, pools, units with their free-list, holds, receipts, idempotency.

Revision ID: 0001
"""

from libs.common.idempotency import ddl as idempotency_ddl
from libs.common.migrations import execute_script

revision = "0001"
down_revision = None

STATES = "'SPARE','ASSIGNED','POOLED','HELD','REMOVAL_SCHEDULED','TERMINATED'"


def upgrade() -> None:
    execute_script(
        f"""
        CREATE TABLE pool.offices (
            office_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            plan_kind text NOT NULL CHECK (plan_kind IN ('BUNDLE', 'LEGACY')),
            is_primary boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (company_id, office_id)
        );
        CREATE UNIQUE INDEX offices_one_primary ON pool.offices (company_id) WHERE is_primary;
        CREATE INDEX offices_by_currency ON pool.offices (company_id, currency);

        CREATE TABLE pool.pools (
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            enabled_at timestamptz NOT NULL,
            PRIMARY KEY (company_id, currency)
        );

        CREATE TABLE pool.holds (
            hold_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            currency char(3) NOT NULL,
            license_type text NOT NULL,
            state text NOT NULL CHECK (state IN ('PENDING','COMMITTED','RELEASED','EXPIRED')),
            quantity integer NOT NULL CHECK (quantity > 0),
            expires_at timestamptz NOT NULL,
            receipt_id uuid NOT NULL,
            created_at timestamptz NOT NULL,
            resolved_at timestamptz,
            CHECK ((state = 'PENDING') = (resolved_at IS NULL)),
            FOREIGN KEY (company_id, office_id) REFERENCES pool.offices (company_id, office_id)
        );
        CREATE INDEX holds_pending_expiry ON pool.holds (expires_at) WHERE state = 'PENDING';

        CREATE TABLE pool.units (
            unit_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            currency char(3) NOT NULL,
            license_type text NOT NULL,
            state text NOT NULL CHECK (state IN ({STATES})),
            assignee_kind text,
            assignee_id text,
            returned_at timestamptz,
            claimable_at timestamptz,
            hold_id uuid REFERENCES pool.holds DEFERRABLE INITIALLY DEFERRED,
            held_from text CHECK (held_from IN ('SPARE', 'POOLED')),
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            CHECK ((state = 'HELD') = (hold_id IS NOT NULL AND held_from IS NOT NULL)),
            CHECK (state = 'ASSIGNED' OR assignee_kind IS NULL),
            CHECK (state <> 'POOLED' OR claimable_at IS NOT NULL),
            FOREIGN KEY (company_id, office_id) REFERENCES pool.offices (company_id, office_id)
        );
        CREATE INDEX units_by_company ON pool.units (company_id, created_at, unit_id);
        CREATE INDEX units_by_office ON pool.units (company_id, office_id, state);
        CREATE INDEX units_by_hold ON pool.units (hold_id) WHERE hold_id IS NOT NULL;
        CREATE INDEX units_held ON pool.units (company_id, currency, license_type)
            WHERE state = 'HELD';

        -- The free-list: one row per unit that can be allocated (SPARE or POOLED). A unit
        -- is handed out by deleting its row, which only one transaction can do.
        CREATE TABLE pool.free_units (
            unit_id uuid PRIMARY KEY REFERENCES pool.units,
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            license_type text NOT NULL,
            office_id uuid NOT NULL,      -- SPARE: the owner; POOLED: who returned it
            pooled boolean NOT NULL,
            returned_at timestamptz,      -- POOLED only: the order the pool hands out
            claimable_at timestamptz,     -- POOLED only: end of the grace period
            CHECK (pooled = (claimable_at IS NOT NULL AND returned_at IS NOT NULL))
        );
        CREATE INDEX free_spare ON pool.free_units (company_id, office_id, license_type)
            WHERE NOT pooled;
        CREATE INDEX free_pooled ON pool.free_units
            (company_id, currency, license_type, returned_at, unit_id) WHERE pooled;
        CREATE INDEX free_pooled_in_grace ON pool.free_units
            (company_id, office_id, license_type, claimable_at) WHERE pooled;
        CREATE INDEX free_by_type ON pool.free_units (company_id, license_type);
        -- A queue-like table: vacuum it often so scans do not wade through dead rows.
        ALTER TABLE pool.free_units SET (autovacuum_vacuum_scale_factor = 0,
            autovacuum_vacuum_threshold = 2000, autovacuum_vacuum_cost_delay = 0);

        CREATE TABLE pool.receipts (
            receipt_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            currency char(3) NOT NULL,
            license_type text NOT NULL,
            requested integer NOT NULL,
            taken jsonb NOT NULL,
            shortfall integer NOT NULL,
            passed_over jsonb NOT NULL,
            hold_id uuid,
            created_at timestamptz NOT NULL
        );
        """
    )
    execute_script(idempotency_ddl("pool"))
