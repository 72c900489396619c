"""A plan's included credit allowance (billing keeps the office's credit account in step
with it), and the credit overage an invoice bills.

Revision ID: 0006
Revises: 0005
"""

from libs.common.migrations import execute_script

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE billing.plans ADD COLUMN credit_allowance bigint NOT NULL DEFAULT 0
            CHECK (credit_allowance >= 0);
        ALTER TABLE billing.invoices ADD COLUMN overages jsonb NOT NULL DEFAULT '[]';
        ALTER TABLE billing.invoices ADD COLUMN overage_included boolean NOT NULL DEFAULT false;
        """
    )
