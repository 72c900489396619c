"""Every key of the provisioning schema leads with company_id, so the schema can be
distributed by company (docs/distribution.md): primary keys become (company_id, id),
foreign keys join on company_id too, and the unique keys of users, licenses and add-ons
are unique per company (a license unit, a user's license of a type and a license's add-on
of a type all belong to one company).

Existing rows keep their values: every row already carries its company_id, and a
license or add-on has the company of its user and license.

Revision ID: 0003
Revises: 0002
"""

from libs.common.migrations import execute_script

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE provisioning.addons DROP CONSTRAINT addons_license_id_fkey,
            DROP CONSTRAINT addons_license_id_license_type_key;
        ALTER TABLE provisioning.licenses DROP CONSTRAINT licenses_user_id_fkey;

        ALTER TABLE provisioning.users DROP CONSTRAINT users_pkey,
            ADD CONSTRAINT users_pkey PRIMARY KEY (company_id, user_id),
            DROP CONSTRAINT users_license_unit_id_key,
            ADD CONSTRAINT users_license_unit_id_key UNIQUE (company_id, license_unit_id);
        ALTER TABLE provisioning.licenses DROP CONSTRAINT licenses_pkey,
            ADD CONSTRAINT licenses_pkey PRIMARY KEY (company_id, license_id);
        ALTER TABLE provisioning.addons DROP CONSTRAINT addons_pkey,
            ADD CONSTRAINT addons_pkey PRIMARY KEY (company_id, addon_id);
        DROP INDEX provisioning.licenses_one_per_user_and_type;
        CREATE UNIQUE INDEX licenses_one_per_user_and_type
            ON provisioning.licenses (company_id, user_id, license_type);

        ALTER TABLE provisioning.licenses ADD CONSTRAINT licenses_user_id_fkey
            FOREIGN KEY (company_id, user_id) REFERENCES provisioning.users (company_id, user_id);
        ALTER TABLE provisioning.addons
            ADD CONSTRAINT addons_license_id_license_type_key
                UNIQUE (company_id, license_id, license_type),
            ADD CONSTRAINT addons_license_id_fkey FOREIGN KEY (company_id, license_id)
                REFERENCES provisioning.licenses (company_id, license_id) ON DELETE CASCADE;
        """
    )
