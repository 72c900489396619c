"""A plan's included credit allowance (billing keeps the office's credit account in step
with it), and the credit overage an invoice bills.

Revision ID: 0005
Revises: 0004
"""

from libs.common.migrations import execute_script

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE billing.plans ADD COLUMN credit_allowance bigint NOT NULL DEFAULT 0
            CHECK (credit_allowance >= 0);
        ALTER TABLE billing.invoices ADD COLUMN overages jsonb NOT NULL DEFAULT '[]';
        ALTER TABLE billing.invoices ADD COLUMN overage_included boolean NOT NULL DEFAULT false;
        """
    )
