"""An office whose plan billing deactivated has plan kind NONE: it takes no part in the
legacy-plan rules.

Revision ID: 0006
Revises: 0005
"""

from libs.common.migrations import execute_script

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE pool.offices DROP CONSTRAINT offices_plan_kind_check;
        ALTER TABLE pool.offices ADD CONSTRAINT offices_plan_kind_check
            CHECK (plan_kind IN ('BUNDLE', 'LEGACY', 'NONE'));
        """
    )
