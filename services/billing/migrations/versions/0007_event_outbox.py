"""Billing's event outbox: its domain events (purchases, invoices), written with their
changes, that WatchEvents streams (libs/common/outbox.py).

Revision ID: 0007
Revises: 0006
"""

from libs.common.migrations import execute_script
from libs.common.outbox import ddl as outbox_ddl

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    execute_script(outbox_ddl("billing"))
