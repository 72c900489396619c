"""Billing schema: plans, quotes, purchases (the checkout saga), invoices, idempotency.

Revision ID: 0001
"""

from libs.common.idempotency import ddl as idempotency_ddl
from libs.common.migrations import execute_script

revision = "0001"
down_revision = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE billing.plans (
            plan_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            kind text NOT NULL CHECK (kind IN ('BUNDLE', 'LEGACY')),
            currency char(3) NOT NULL,
            prices jsonb NOT NULL,
            contracted boolean NOT NULL,
            start_at timestamptz NOT NULL,
            active boolean NOT NULL,
            is_primary boolean NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE UNIQUE INDEX plans_one_active_per_office ON billing.plans (office_id) WHERE active;
        CREATE INDEX plans_by_company ON billing.plans (company_id, currency, start_at, plan_id);

        CREATE TABLE billing.quotes (
            quote_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            license_type text NOT NULL,
            quantity integer NOT NULL CHECK (quantity > 0),
            restored integer NOT NULL CHECK (restored >= 0),
            from_pool integer NOT NULL CHECK (from_pool >= 0),
            new_units integer NOT NULL CHECK (new_units >= 0),
            plan_id uuid NOT NULL REFERENCES billing.plans,
            currency char(3) NOT NULL,
            unit_price bigint NOT NULL CHECK (unit_price >= 0),
            amount bigint NOT NULL CHECK (amount >= 0),
            cycle_start timestamptz NOT NULL,
            cycle_end timestamptz NOT NULL,
            quoted_at timestamptz NOT NULL,
            hold_id uuid,
            expires_at timestamptz NOT NULL,
            CHECK (restored + from_pool + new_units = quantity)
        );

        -- One row per purchase, written before any pool call: the saga's durable state.
        CREATE TABLE billing.purchases (
            purchase_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            request_id text NOT NULL,
            fingerprint bytea NOT NULL,
            office_id uuid NOT NULL,
            license_type text NOT NULL,
            quantity integer NOT NULL CHECK (quantity > 0),
            state text NOT NULL CHECK (state IN ('PENDING', 'COMPLETED', 'FAILED')),
            plan_id uuid NOT NULL REFERENCES billing.plans,
            currency char(3) NOT NULL,
            unit_price bigint NOT NULL CHECK (unit_price >= 0),
            cycle_start timestamptz NOT NULL,
            cycle_end timestamptz NOT NULL,
            period text NOT NULL,
            purchased_at timestamptz NOT NULL,
            attempt integer NOT NULL DEFAULT 1,
            step text NOT NULL,
            quote_id uuid UNIQUE REFERENCES billing.quotes,
            restored integer,
            from_pool integer,
            new_units integer,
            amount bigint NOT NULL DEFAULT 0 CHECK (amount >= 0),
            hold_id uuid,
            reserve_quantity integer,
            unit_ids uuid[] NOT NULL DEFAULT '{}',
            resolved_at timestamptz,
            failure_kind text,
            failure_reason text,
            failure_message text,
            lease_until timestamptz,
            UNIQUE (company_id, request_id),
            CHECK ((state = 'PENDING') = (resolved_at IS NULL)),
            CHECK (state = 'COMPLETED' OR amount = 0),
            CHECK (state <> 'COMPLETED' OR restored + from_pool + new_units = quantity)
        );
        CREATE INDEX purchases_pending ON billing.purchases (lease_until) WHERE state = 'PENDING';
        CREATE INDEX purchases_by_period ON billing.purchases (company_id, period)
            WHERE state = 'COMPLETED';
        CREATE INDEX purchases_by_company ON billing.purchases
            (company_id, purchased_at DESC, purchase_id DESC);

        CREATE TABLE billing.invoices (
            invoice_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            period text NOT NULL,
            snapshot_at timestamptz NOT NULL,
            lines jsonb NOT NULL,
            charges jsonb NOT NULL,
            live_units bigint NOT NULL,
            billed_units bigint NOT NULL,
            balanced boolean NOT NULL,
            terminated_units bigint NOT NULL DEFAULT 0,
            terminations_done boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL,
            UNIQUE (company_id, period)
        );
        """
    )
    execute_script(idempotency_ddl("billing"))
