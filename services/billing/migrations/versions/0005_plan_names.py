"""Plans have a display name, for people (the command line's tables).

Revision ID: 0005
Revises: 0004
"""

from libs.common.migrations import execute_script

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    execute_script(
        "ALTER TABLE billing.plans ADD COLUMN IF NOT EXISTS display_name text NOT NULL DEFAULT '';"
    )
