"""Every key of the billing schema leads with company_id, so the schema can be
distributed by company (docs/distribution.md): primary keys become (company_id, id),
foreign keys join on company_id too, and an office's one active plan is unique per
(company, office) (office ids are unique across companies in the pool, which registers
every office before billing keeps a plan for it).

Existing rows keep their values: every row already carries its company_id, and a quote
or purchase has the company of its plan and quote.

Revision ID: 0004
Revises: 0003
"""

from libs.common.migrations import execute_script

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE billing.purchases DROP CONSTRAINT purchases_plan_id_fkey,
            DROP CONSTRAINT purchases_quote_id_fkey,
            DROP CONSTRAINT purchases_quote_id_key;
        ALTER TABLE billing.quotes DROP CONSTRAINT quotes_plan_id_fkey;

        ALTER TABLE billing.plans DROP CONSTRAINT plans_pkey,
            ADD CONSTRAINT plans_pkey PRIMARY KEY (company_id, plan_id);
        ALTER TABLE billing.quotes DROP CONSTRAINT quotes_pkey,
            ADD CONSTRAINT quotes_pkey PRIMARY KEY (company_id, quote_id);
        ALTER TABLE billing.purchases DROP CONSTRAINT purchases_pkey,
            ADD CONSTRAINT purchases_pkey PRIMARY KEY (company_id, purchase_id);
        ALTER TABLE billing.invoices DROP CONSTRAINT invoices_pkey,
            ADD CONSTRAINT invoices_pkey PRIMARY KEY (company_id, invoice_id);

        ALTER TABLE billing.quotes ADD CONSTRAINT quotes_plan_id_fkey
            FOREIGN KEY (company_id, plan_id) REFERENCES billing.plans (company_id, plan_id);
        ALTER TABLE billing.purchases
            ADD CONSTRAINT purchases_plan_id_fkey FOREIGN KEY (company_id, plan_id)
                REFERENCES billing.plans (company_id, plan_id),
            ADD CONSTRAINT purchases_quote_id_key UNIQUE (company_id, quote_id),
            ADD CONSTRAINT purchases_quote_id_fkey FOREIGN KEY (company_id, quote_id)
                REFERENCES billing.quotes (company_id, quote_id);

        DROP INDEX billing.plans_one_active_per_office;
        CREATE UNIQUE INDEX plans_one_active_per_office ON billing.plans (company_id, office_id)
            WHERE active;
        """
    )
