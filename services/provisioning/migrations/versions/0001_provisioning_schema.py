"""Provisioning schema: users, base licenses, add-ons, imports, idempotency.

Revision ID: 0001
"""

from libs.common.idempotency import ddl as idempotency_ddl
from libs.common.migrations import execute_script

revision = "0001"
down_revision = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE provisioning.users (
            user_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            display_name text NOT NULL,
            email text,
            license_type text NOT NULL,
            license_unit_id uuid NOT NULL UNIQUE,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE UNIQUE INDEX users_email ON provisioning.users (company_id, lower(email))
            WHERE email IS NOT NULL;
        CREATE INDEX users_by_company ON provisioning.users (company_id, created_at, user_id);
        CREATE INDEX users_by_office
            ON provisioning.users (company_id, office_id, created_at, user_id);

        -- A base license: a pool unit (license_id) assigned to a user. Extension keys and
        -- numbers are unique per company; the checks are deferred so that one transaction
        -- may swap them between licenses (mass configuration).
        CREATE TABLE provisioning.licenses (
            license_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            office_id uuid NOT NULL,
            license_type text NOT NULL,
            user_id uuid NOT NULL REFERENCES provisioning.users,
            ext_key text,
            number text,
            number_key text GENERATED ALWAYS AS (ltrim(number, '+')) STORED,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            CONSTRAINT licenses_ext_key UNIQUE (company_id, ext_key) DEFERRABLE INITIALLY DEFERRED,
            CONSTRAINT licenses_number UNIQUE (company_id, number_key)
                DEFERRABLE INITIALLY DEFERRED,
            CHECK (license_type = 'phone_system' OR (ext_key IS NULL AND number IS NULL))
        );
        CREATE UNIQUE INDEX licenses_one_per_user_and_type
            ON provisioning.licenses (user_id, license_type);
        CREATE INDEX licenses_by_company
            ON provisioning.licenses (company_id, created_at, license_id);
        CREATE INDEX licenses_by_type
            ON provisioning.licenses (company_id, license_type, created_at, license_id);

        CREATE TABLE provisioning.addons (
            addon_id uuid PRIMARY KEY,
            company_id uuid NOT NULL,
            license_id uuid NOT NULL REFERENCES provisioning.licenses ON DELETE CASCADE,
            license_type text NOT NULL,
            created_at timestamptz NOT NULL,
            UNIQUE (license_id, license_type)
        );

        -- Mass-configuration imports: the job, its planned rows, and its pool steps (one
        -- hold per license type and chunk of rows, per attempt).
        CREATE TABLE provisioning.imports (
            company_id uuid NOT NULL,
            import_id text NOT NULL,
            office_id uuid NOT NULL,
            fingerprint bytea NOT NULL,
            state text NOT NULL CHECK (state IN ('RUNNING', 'SUCCEEDED', 'FAILED')),
            stage text NOT NULL,
            attempt integer NOT NULL DEFAULT 1,
            chunk_size integer NOT NULL,
            row_count integer NOT NULL,
            rows_reconfiguring integer NOT NULL,
            warnings jsonb NOT NULL,
            quote jsonb NOT NULL,
            units_total integer NOT NULL,
            units_reserved integer NOT NULL DEFAULT 0,
            units_committed integer NOT NULL DEFAULT 0,
            rows_applied integer NOT NULL DEFAULT 0,
            failure jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (company_id, import_id)
        );
        CREATE INDEX imports_running ON provisioning.imports (updated_at)
            WHERE state = 'RUNNING';

        CREATE TABLE provisioning.import_rows (
            company_id uuid NOT NULL,
            import_id text NOT NULL,
            row_number integer NOT NULL,
            user_id uuid NOT NULL,
            license_id uuid,
            ext_key text NOT NULL,
            number text,
            new_addons text[] NOT NULL,
            PRIMARY KEY (company_id, import_id, row_number),
            FOREIGN KEY (company_id, import_id) REFERENCES provisioning.imports ON DELETE CASCADE
        );

        CREATE TABLE provisioning.import_steps (
            company_id uuid NOT NULL,
            import_id text NOT NULL,
            attempt integer NOT NULL,
            step integer NOT NULL,
            license_type text NOT NULL,
            hold_id uuid,
            unit_ids uuid[] NOT NULL,
            shortfall integer NOT NULL,
            committed boolean NOT NULL DEFAULT false,
            PRIMARY KEY (company_id, import_id, attempt, step),
            FOREIGN KEY (company_id, import_id) REFERENCES provisioning.imports ON DELETE CASCADE
        );
        """
    )
    execute_script(idempotency_ddl("provisioning"))
