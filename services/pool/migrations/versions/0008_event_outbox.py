"""The pool's event outbox: its domain events, written with their changes, that
WatchEvents streams (libs/common/outbox.py).

Revision ID: 0008
Revises: 0007
"""

from libs.common.migrations import execute_script
from libs.common.outbox import ddl as outbox_ddl

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    execute_script(outbox_ddl("pool"))
