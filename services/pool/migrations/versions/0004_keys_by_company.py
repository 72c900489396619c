"""Every key of the pool schema leads with company_id, so the schema can be distributed
by company (docs/distribution.md): primary keys become (company_id, id), foreign keys
join on company_id too. Office ids stay unique across companies (an office id is its
company's for good) through `office_owners`, a small table of global data (a reference
table once distributed), filled here from the offices that exist.

Existing rows keep their values: every row already carries its company_id, and a unit,
hold or free-list row has the company of the row it points at.

Revision ID: 0004
Revises: 0003
"""

from libs.common.migrations import execute_script

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE pool.free_units DROP CONSTRAINT free_units_unit_id_fkey;
        ALTER TABLE pool.units DROP CONSTRAINT units_hold_id_fkey,
            DROP CONSTRAINT units_company_id_office_id_fkey;
        ALTER TABLE pool.holds DROP CONSTRAINT holds_company_id_office_id_fkey;

        ALTER TABLE pool.offices DROP CONSTRAINT offices_company_id_office_id_key,
            DROP CONSTRAINT offices_pkey,
            ADD CONSTRAINT offices_pkey PRIMARY KEY (company_id, office_id);
        ALTER TABLE pool.holds DROP CONSTRAINT holds_pkey,
            ADD CONSTRAINT holds_pkey PRIMARY KEY (company_id, hold_id);
        ALTER TABLE pool.units DROP CONSTRAINT units_pkey,
            ADD CONSTRAINT units_pkey PRIMARY KEY (company_id, unit_id);
        ALTER TABLE pool.free_units DROP CONSTRAINT free_units_pkey,
            ADD CONSTRAINT free_units_pkey PRIMARY KEY (company_id, unit_id);
        ALTER TABLE pool.receipts DROP CONSTRAINT receipts_pkey,
            ADD CONSTRAINT receipts_pkey PRIMARY KEY (company_id, receipt_id);

        ALTER TABLE pool.holds ADD CONSTRAINT holds_company_id_office_id_fkey
            FOREIGN KEY (company_id, office_id) REFERENCES pool.offices (company_id, office_id);
        ALTER TABLE pool.units ADD CONSTRAINT units_company_id_office_id_fkey
            FOREIGN KEY (company_id, office_id) REFERENCES pool.offices (company_id, office_id),
            ADD CONSTRAINT units_hold_id_fkey FOREIGN KEY (company_id, hold_id)
                REFERENCES pool.holds (company_id, hold_id) DEFERRABLE INITIALLY DEFERRED;
        ALTER TABLE pool.free_units ADD CONSTRAINT free_units_unit_id_fkey
            FOREIGN KEY (company_id, unit_id) REFERENCES pool.units (company_id, unit_id);

        -- Which company an office id belongs to, for every company: written once per office.
        CREATE TABLE pool.office_owners (
            office_id uuid PRIMARY KEY,
            company_id uuid NOT NULL
        );
        INSERT INTO pool.office_owners (office_id, company_id)
            SELECT office_id, company_id FROM pool.offices;
        """
    )
