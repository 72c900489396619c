"""Holds remember their units: after a commit, release or expiry the units no longer
point at the hold, and replays and GetHold must still see which units it held.

Revision ID: 0003
Revises: 0002
"""

from libs.common.migrations import execute_script

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE pool.holds ADD COLUMN unit_ids uuid[] NOT NULL DEFAULT '{}';
        UPDATE pool.holds h SET unit_ids = ARRAY(
            SELECT u.unit_id FROM pool.units u WHERE u.hold_id = h.hold_id ORDER BY u.unit_id
        );
        """
    )
