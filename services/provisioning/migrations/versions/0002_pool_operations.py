"""Pool operations: the durable record of a request that takes pool units and then writes
locally, written before its first pool call, so that a failure or a crash at any step is
finished or undone (an undone one is deleted) (see services/provisioning/domain/pool_operation.py).

Revision ID: 0002
Revises: 0001
"""

from libs.common.migrations import execute_script

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE provisioning.pool_operations (
            company_id uuid NOT NULL,
            request_id text NOT NULL,
            fingerprint bytea NOT NULL,
            -- Random, one per attempt: the pool request ids of the attempt derive from it.
            -- An undone attempt's row is deleted, so a retry starts a new one.
            attempt uuid NOT NULL,
            step text NOT NULL CHECK (step IN ('RESERVING', 'WRITTEN', 'DONE')),
            kind text NOT NULL,
            office_id uuid NOT NULL,
            plan jsonb NOT NULL,
            round integer NOT NULL DEFAULT 0,
            holds jsonb NOT NULL DEFAULT '[]',
            response bytea,
            lease_owner uuid,
            lease_until timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (company_id, request_id),
            CHECK ((step IN ('WRITTEN', 'DONE')) = (response IS NOT NULL))
        );
        -- What the recovery looks for: unfinished operations whose driver's lease ended.
        CREATE INDEX pool_operations_unfinished ON provisioning.pool_operations (lease_until)
            WHERE step IN ('RESERVING', 'WRITTEN');
        """
    )
