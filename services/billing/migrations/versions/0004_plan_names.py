"""Plans have a display name, for people (the command line's tables).

Revision ID: 0004
Revises: 0003
"""

from libs.common.migrations import execute_script

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    execute_script(
        "ALTER TABLE billing.plans ADD COLUMN IF NOT EXISTS display_name text NOT NULL DEFAULT '';"
    )
