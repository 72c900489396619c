"""Credits schema: office accounts, pooling, the double-entry ledger, grants, usage.

Revision ID: 0001
"""

from libs.common.idempotency import ddl as idempotency_ddl
from libs.common.migrations import execute_script

revision = "0001"
down_revision = None

KINDS = (
    "'ISSUED','ALLOWANCE','OFFICE_BALANCE','COMPANY_POOL','AI_AGENT_CREDITS','CONSUMED','OVERAGE'"
)
OFFICE_KINDS = "'ALLOWANCE','OFFICE_BALANCE','CONSUMED','OVERAGE'"
USAGE_KINDS = "'CALLING','MESSAGING','FAX','AI_AGENT'"


def upgrade() -> None:
    execute_script(
        f"""
        CREATE TABLE credits.offices (
            office_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            is_primary boolean NOT NULL DEFAULT false,
            allowance bigint NOT NULL CHECK (allowance >= 0),
            period_anchor timestamptz NOT NULL,
            overage_policy text NOT NULL CHECK (overage_policy IN ('ALLOW', 'REJECT')),
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            UNIQUE (company_id, office_id)
        );
        CREATE UNIQUE INDEX offices_one_primary ON credits.offices (company_id) WHERE is_primary;
        CREATE INDEX offices_by_currency ON credits.offices (company_id, currency, office_id);

        CREATE TABLE credits.pooling (
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            enabled boolean NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (company_id, currency)
        );

        -- Ledger accounts of one (company, currency). The balance is maintained with every
        -- entry, in the same transaction; CheckLedger proves it equals the sum of entries.
        CREATE TABLE credits.ledger_accounts (
            account_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            code text NOT NULL,
            kind text NOT NULL CHECK (kind IN ({KINDS})),
            office_id uuid,
            period_start timestamptz,
            balance bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL,
            UNIQUE (company_id, currency, code),
            UNIQUE (account_id, company_id, currency),
            CHECK ((kind IN ({OFFICE_KINDS})) = (office_id IS NOT NULL)),
            CHECK ((kind = 'ALLOWANCE') = (period_start IS NOT NULL)),
            -- No balance holding credits ever goes below zero; counter-accounts (credits
            -- issued, overage owed) never go above it.
            CHECK (CASE WHEN kind IN ('ISSUED', 'OVERAGE') THEN balance <= 0
                        ELSE balance >= 0 END)
        );
        CREATE INDEX ledger_accounts_by_office ON credits.ledger_accounts (office_id, kind)
            WHERE office_id IS NOT NULL;

        CREATE TABLE credits.grants (
            grant_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            target text NOT NULL
                CHECK (target IN ('COMPANY_POOL', 'OFFICE_BALANCE', 'AI_AGENT_CREDITS')),
            office_id uuid,
            currency char(3) NOT NULL,
            amount bigint NOT NULL CHECK (amount > 0),
            note text NOT NULL,
            created_at timestamptz NOT NULL
        );

        CREATE TABLE credits.usage_records (
            usage_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            request_id text NOT NULL,
            office_id uuid NOT NULL,
            kind text NOT NULL CHECK (kind IN ({USAGE_KINDS})),
            currency char(3) NOT NULL,
            amount bigint NOT NULL CHECK (amount > 0),
            occurred_at timestamptz NOT NULL,
            period_start timestamptz NOT NULL,
            period_end timestamptz NOT NULL,
            from_allowance bigint NOT NULL CHECK (from_allowance >= 0),
            from_office_balance bigint NOT NULL CHECK (from_office_balance >= 0),
            from_company_pool bigint NOT NULL CHECK (from_company_pool >= 0),
            from_ai_agent_credits bigint NOT NULL CHECK (from_ai_agent_credits >= 0),
            overage bigint NOT NULL CHECK (overage >= 0),
            recorded_at timestamptz NOT NULL,
            UNIQUE (company_id, request_id),
            CHECK (from_allowance + from_office_balance + from_company_pool
                   + from_ai_agent_credits + overage = amount),
            CHECK (occurred_at >= period_start AND occurred_at < period_end),
            FOREIGN KEY (company_id, office_id) REFERENCES credits.offices (company_id, office_id)
        );
        CREATE INDEX usage_by_company ON credits.usage_records
            (company_id, occurred_at, usage_id);
        CREATE INDEX usage_by_office ON credits.usage_records
            (company_id, office_id, occurred_at, usage_id);

        -- The ledger: append-only; one row per double entry, amount above zero, from one
        -- account to another of the same company and currency.
        CREATE TABLE credits.entries (
            entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            kind text NOT NULL
                CHECK (kind IN ('ALLOWANCE', 'GRANT', 'USAGE', 'OVERAGE', 'TRANSFER')),
            debit_account_id bigint NOT NULL,
            credit_account_id bigint NOT NULL,
            amount bigint NOT NULL CHECK (amount > 0),
            usage_id uuid REFERENCES credits.usage_records DEFERRABLE INITIALLY DEFERRED,
            grant_id uuid REFERENCES credits.grants DEFERRABLE INITIALLY DEFERRED,
            created_at timestamptz NOT NULL,
            CHECK (debit_account_id <> credit_account_id),
            -- Both sides belong to the entry's company and currency.
            FOREIGN KEY (debit_account_id, company_id, currency)
                REFERENCES credits.ledger_accounts (account_id, company_id, currency),
            FOREIGN KEY (credit_account_id, company_id, currency)
                REFERENCES credits.ledger_accounts (account_id, company_id, currency)
        );
        CREATE INDEX entries_by_company ON credits.entries (company_id, entry_id);
        CREATE INDEX entries_by_debit ON credits.entries (debit_account_id);
        CREATE INDEX entries_by_credit ON credits.entries (credit_account_id);
        CREATE INDEX entries_by_usage ON credits.entries (usage_id) WHERE usage_id IS NOT NULL;

        CREATE FUNCTION credits.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'credits.% is append-only', TG_TABLE_NAME; END $$;
        CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON credits.entries
            FOR EACH ROW EXECUTE FUNCTION credits.refuse_change();
        CREATE TRIGGER usage_append_only BEFORE UPDATE OR DELETE ON credits.usage_records
            FOR EACH ROW EXECUTE FUNCTION credits.refuse_change();
        CREATE TRIGGER grants_append_only BEFORE UPDATE OR DELETE ON credits.grants
            FOR EACH ROW EXECUTE FUNCTION credits.refuse_change();
        """
    )
    execute_script(idempotency_ddl("credits"))
