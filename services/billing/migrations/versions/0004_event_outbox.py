"""Billing's event outbox: its domain events (purchases, invoices), written with their
changes, that WatchEvents streams (libs/common/outbox.py).

Revision ID: 0004
Revises: 0003
"""

from libs.common.migrations import execute_script
from libs.common.outbox import ddl as outbox_ddl

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    execute_script(outbox_ddl("billing"))
