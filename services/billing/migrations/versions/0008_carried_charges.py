"""Each purchase charge names the invoice that carries it, so a charge is on exactly one
invoice: the first one made for its period or a later one (a charge completed after its
period's invoice is carried to the next). Charges already on an invoice are marked so.

Revision ID: 0008
Revises: 0007
"""

from libs.common.migrations import execute_script

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE billing.purchases ADD COLUMN invoice_id uuid;
        UPDATE billing.purchases p SET invoice_id = i.invoice_id
        FROM billing.invoices i, jsonb_array_elements(i.charges) AS c
        WHERE i.company_id = p.company_id AND (c ->> 'purchase_id')::uuid = p.purchase_id;
        CREATE INDEX purchases_not_invoiced ON billing.purchases (company_id, period)
            WHERE state = 'COMPLETED' AND invoice_id IS NULL;
        """
    )
