"""Business time: the injectable clock's instant, or the database's `now()`.

Instants that carry business meaning (plan times, purchase times, quote expiry) come from
the clock as `coalesce($n, now())`. Leases of purchase drivers use the database's real
`now()`: they are about processes, not business time."""

from __future__ import annotations

from libs.common.clock import TransactionClock

Instants = TransactionClock
