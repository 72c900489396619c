"""Plans are found by office, to tell an office of another company from an office of
the caller's own company that has no active plan.

Revision ID: 0002
Revises: 0001
"""

from libs.common.migrations import execute_script

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    execute_script("CREATE INDEX plans_by_office ON billing.plans (office_id);")
