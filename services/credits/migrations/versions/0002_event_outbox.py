"""The credits service's event outbox: its domain events, written with their changes,
that WatchEvents streams (libs/common/outbox.py).

Revision ID: 0002
Revises: 0001
"""

from libs.common.migrations import execute_script
from libs.common.outbox import ddl as outbox_ddl

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    execute_script(outbox_ddl("credits"))
