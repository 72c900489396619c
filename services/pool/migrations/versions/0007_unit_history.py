"""Unit history: every state change of a unit, written in the transaction of the change.

`pool.unit_events` keeps one row per change of one unit, with the unit's state, office
and held-from state after it (what a snapshot counts) and why it happened (the request,
receipt, hold, assignee). The as-of snapshot counts, per unit, its last event at or before
the instant. Units that exist when history starts get one RECORDED event with their
state as it is, and their company a horizon: as-of snapshots reach back to it, no
further (`pool.history_horizons`).

Revision ID: 0007
Revises: 0006
"""

from libs.common.migrations import execute_script

revision = "0007"
down_revision = "0006"

KINDS = (
    "'RECORDED','CREATED','ACQUIRED','RESERVED','COMMITTED','RELEASED','EXPIRED',"
    "'REASSIGNED','RETURNED','POOLED','REMOVAL_SCHEDULED','RESTORED','TERMINATED'"
)


def upgrade() -> None:
    execute_script(
        f"""
        CREATE TABLE pool.unit_events (
            company_id uuid NOT NULL,
            occurred_at timestamptz NOT NULL,
            -- No sequence cache: ids follow insertion order, which per (company, currency)
            -- is the order of the lock, so a unit's events sort by id.
            event_id bigint GENERATED ALWAYS AS IDENTITY,
            unit_id uuid NOT NULL,
            kind text NOT NULL CHECK (kind IN ({KINDS})),
            state text NOT NULL,
            office_id uuid NOT NULL,      -- the unit's office after the change
            held_from text,
            for_office_id uuid,           -- RESERVED: the office the hold is for
            source text,                  -- ACQUIRED, RESERVED: the allocation source
            assignee_kind text,
            assignee_id text,
            claimable_at timestamptz,
            hold_id uuid,
            receipt_id uuid,
            request_id text,
            origin text,                  -- CREATED: what the units were bought for
            PRIMARY KEY (company_id, occurred_at, event_id)
        );
        CREATE INDEX unit_events_by_unit ON pool.unit_events (company_id, unit_id, event_id);

        CREATE TABLE pool.history_horizons (
            company_id uuid PRIMARY KEY,
            starts_at timestamptz NOT NULL
        );
        INSERT INTO pool.history_horizons (company_id, starts_at)
        SELECT DISTINCT company_id, now() FROM pool.units;
        INSERT INTO pool.unit_events (company_id, occurred_at, unit_id, kind, state, office_id,
            held_from, assignee_kind, assignee_id, claimable_at, hold_id)
        SELECT company_id, least(updated_at, now()), unit_id, 'RECORDED', state, office_id,
            held_from, assignee_kind, assignee_id, claimable_at, hold_id
        FROM pool.units ORDER BY updated_at, unit_id;
        """
    )
