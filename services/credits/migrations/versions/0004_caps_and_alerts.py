"""Office caps on the shared company balance, balance thresholds and their alerts.

Revision ID: 0004
"""

from libs.common.migrations import execute_script

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    execute_script(
        """
        -- What an office may draw from the shared company balance per billing period.
        CREATE TABLE credits.office_caps (
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            cap bigint NOT NULL CHECK (cap >= 0),
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (company_id, office_id),
            FOREIGN KEY (company_id, office_id) REFERENCES credits.offices (company_id, office_id)
        );

        -- What a capped office drew from the shared balance in one of its periods: the sum
        -- of its usage records' from_company_pool there, kept with every usage while the
        -- office has a cap (made from the usage records when missing, dropped with the cap).
        CREATE TABLE credits.office_pool_draws (
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            period_start timestamptz NOT NULL,
            drawn bigint NOT NULL CHECK (drawn >= 0),
            PRIMARY KEY (company_id, office_id, period_start),
            FOREIGN KEY (company_id, office_id)
                REFERENCES credits.office_caps (company_id, office_id) ON DELETE CASCADE
        );

        -- The balance of the shared company balance right after credits last entered it
        -- (percent thresholds are taken of it).
        CREATE TABLE credits.pool_top_ups (
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            level bigint NOT NULL CHECK (level >= 0),
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (company_id, currency)
        );
        INSERT INTO credits.pool_top_ups (company_id, currency, level, updated_at)
        SELECT company_id, currency, balance, now() FROM credits.ledger_accounts
        WHERE kind = 'COMPANY_POOL';

        -- Levels of the shared company balance of a currency: an absolute balance
        -- (BALANCE) or a percent of the top-up level (PERCENT).
        CREATE TABLE credits.credit_thresholds (
            company_id uuid NOT NULL,
            currency char(3) NOT NULL,
            kind text NOT NULL CHECK (kind IN ('BALANCE', 'PERCENT')),
            value bigint NOT NULL
                CHECK (value >= 0 AND (kind = 'BALANCE' OR value BETWEEN 1 AND 99)),
            created_at timestamptz NOT NULL,
            PRIMARY KEY (company_id, currency, kind, value)
        );

        -- One alert per threshold per alert period (a calendar month, UTC): the unique key
        -- is the guarantee, whatever the concurrency.
        CREATE TABLE credits.credit_alerts (
            company_id uuid NOT NULL,
            alert_id uuid NOT NULL,
            currency char(3) NOT NULL,
            threshold_kind text NOT NULL CHECK (threshold_kind IN ('BALANCE', 'PERCENT')),
            threshold_value bigint NOT NULL,
            period_start timestamptz NOT NULL,
            period_end timestamptz NOT NULL,
            level bigint NOT NULL,
            balance bigint NOT NULL,
            usage_id uuid NOT NULL,
            office_id uuid NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (company_id, alert_id),
            UNIQUE (company_id, currency, threshold_kind, threshold_value, period_start)
        );
        CREATE INDEX credit_alerts_by_time ON credits.credit_alerts
            (company_id, created_at, alert_id);
        CREATE TRIGGER credit_alerts_append_only BEFORE UPDATE OR DELETE ON credits.credit_alerts
            FOR EACH ROW EXECUTE FUNCTION credits.refuse_change();
        """
    )
