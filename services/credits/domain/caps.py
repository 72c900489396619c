"""Office caps on the shared company balance (docs/product.md, "Credits").

A cap limits what one office draws from `COMPANY_POOL` in one of its billing periods
(the period a usage is charged to, as for its allowance). Only draws from the shared
balance count and are limited: the allowance, the office's own balance (pooling off)
and AI agent credits are not. A usage that would go past the cap draws up to it; the
rest follows the office's overage policy (`drawing`).

What a capped office drew in a period is the sum of its usage records' company pool
part there; the service keeps it as a running total while the cap exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

DrawKey = tuple[uuid.UUID, datetime]  # (office, period start)


class PoolDraws:
    """What capped offices drew from the shared balance, per period, as a batch charges
    its usages one after the other."""

    def __init__(self, caps: Mapping[uuid.UUID, int], drawn: Mapping[DrawKey, int]) -> None:
        self._caps = dict(caps)
        self.drawn = dict(drawn)  # every key loaded, with the draws of this batch added

    def capped(self, office_id: uuid.UUID) -> bool:
        return office_id in self._caps

    def left(self, office_id: uuid.UUID, period_start: datetime) -> int | None:
        """What the office may still draw in the period; None: it has no cap."""
        cap = self._caps.get(office_id)
        if cap is None:
            return None
        return max(cap - self.drawn.get((office_id, period_start), 0), 0)

    def add(self, office_id: uuid.UUID, period_start: datetime, amount: int) -> None:
        if amount and office_id in self._caps:
            key = (office_id, period_start)
            self.drawn[key] = self.drawn.get(key, 0) + amount
