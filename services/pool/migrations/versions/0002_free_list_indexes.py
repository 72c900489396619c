"""Free-list indexes that leave the planner one choice per source.

A (company_id, license_type) index looked cheap to the planner right after a bulk load
(stale statistics) and turned the pool pick into a scan and sort of every free unit. Spare
units are now indexed by (company, type, office, unit), which serves both an office's own pick and
the passed-over counts.

Revision ID: 0002
Revises: 0001
"""

from libs.common.migrations import execute_script

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    execute_script(
        """
        DROP INDEX pool.free_by_type;
        DROP INDEX pool.free_spare;
        CREATE INDEX free_spare ON pool.free_units
            (company_id, license_type, office_id, unit_id) WHERE NOT pooled;
        """
    )
