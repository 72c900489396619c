"""The credits service's event outbox: its domain events, written with their changes,
that WatchEvents streams (libs/common/outbox.py).

Revision ID: 0003
Revises: 0002
"""

from libs.common.migrations import execute_script
from libs.common.outbox import ddl as outbox_ddl

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    execute_script(outbox_ddl("credits"))
