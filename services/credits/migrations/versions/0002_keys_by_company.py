"""Every key of the credits schema leads with company_id, so the schema can be
distributed by company (docs/distribution.md): primary keys become (company_id, id),
foreign keys join on company_id too. Office ids stay unique across companies through
`office_owners`, a small table of global data (a reference table once distributed),
filled here from the offices that exist.

Existing rows keep their values: every row already carries its company_id, and an entry
has the company of the usage or grant it records.

Revision ID: 0002
Revises: 0001
"""

from libs.common.migrations import execute_script

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE credits.usage_records DROP CONSTRAINT usage_records_company_id_office_id_fkey;
        ALTER TABLE credits.entries DROP CONSTRAINT entries_usage_id_fkey,
            DROP CONSTRAINT entries_grant_id_fkey;

        ALTER TABLE credits.offices DROP CONSTRAINT offices_company_id_office_id_key,
            DROP CONSTRAINT offices_pkey,
            ADD CONSTRAINT offices_pkey PRIMARY KEY (company_id, office_id);
        ALTER TABLE credits.ledger_accounts DROP CONSTRAINT ledger_accounts_pkey,
            ADD CONSTRAINT ledger_accounts_pkey PRIMARY KEY (company_id, account_id);
        ALTER TABLE credits.grants DROP CONSTRAINT grants_pkey,
            ADD CONSTRAINT grants_pkey PRIMARY KEY (company_id, grant_id);
        ALTER TABLE credits.usage_records DROP CONSTRAINT usage_records_pkey,
            ADD CONSTRAINT usage_records_pkey PRIMARY KEY (company_id, usage_id);
        ALTER TABLE credits.entries DROP CONSTRAINT entries_pkey,
            ADD CONSTRAINT entries_pkey PRIMARY KEY (company_id, entry_id);

        ALTER TABLE credits.usage_records ADD CONSTRAINT usage_records_company_id_office_id_fkey
            FOREIGN KEY (company_id, office_id)
            REFERENCES credits.offices (company_id, office_id);
        ALTER TABLE credits.entries
            ADD CONSTRAINT entries_usage_id_fkey FOREIGN KEY (company_id, usage_id)
                REFERENCES credits.usage_records (company_id, usage_id)
                DEFERRABLE INITIALLY DEFERRED,
            ADD CONSTRAINT entries_grant_id_fkey FOREIGN KEY (company_id, grant_id)
                REFERENCES credits.grants (company_id, grant_id) DEFERRABLE INITIALLY DEFERRED;

        -- Which company an office id belongs to, for every company: written once per office.
        CREATE TABLE credits.office_owners (
            office_id uuid PRIMARY KEY,
            company_id uuid NOT NULL
        );
        INSERT INTO credits.office_owners (office_id, company_id)
            SELECT office_id, company_id FROM credits.offices;
        """
    )
