"""The instant of a transaction: the injected clock's, else the database's."""

from __future__ import annotations

from libs.common.clock import TransactionClock

TxClock = TransactionClock
