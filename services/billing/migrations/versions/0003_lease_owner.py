"""Purchase leases name their driver, so a heartbeat renews only the leases it holds and
a driver that lost its lease cannot drop its successor's.

Revision ID: 0003
Revises: 0002
"""

from libs.common.migrations import execute_script

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    execute_script("ALTER TABLE billing.purchases ADD COLUMN lease_owner uuid;")
