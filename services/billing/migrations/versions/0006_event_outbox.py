"""Billing's event outbox: its domain events (purchases, invoices), written with their
changes, that WatchEvents streams (libs/common/outbox.py).

Revision ID: 0006
Revises: 0005
"""

from libs.common.migrations import execute_script
from libs.common.outbox import ddl as outbox_ddl

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    execute_script(outbox_ddl("billing"))
