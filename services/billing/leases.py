"""Leases of purchase drivers, kept alive by a heartbeat.

One driver at a time works on a purchase: it takes the purchase's lease in the database
(only where no live lease is, see `BillingRepository.take_lease`) under a token of its
own. Leases are short, so the purchase of a driver that died (a crash) is free again
seconds later; while a driver works, this process renews every lease it holds.

A drive runs under a local deadline that each renewal moves on and that always falls
before the lease's end in the database: a driver whose renewals stop (database out of
reach, event loop starved) stops itself (`LeaseLost`) before another driver can take the
purchase over, so two drivers never work on one purchase at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from libs.common import metrics
from services.billing.repository import BillingRepository
from services.billing.repository.purchases import PurchaseKey

log = logging.getLogger(__name__)

# Renewals per lease period: two may fail or come late before a drive stops.
RENEWALS_PER_LEASE = 3
# Share of the lease a drive may use after its last renewal: the rest is the margin that
# keeps its local deadline before the database's.
USABLE_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Lease:
    """A driver's token, and the loop time just before the statement that took it."""

    token: uuid.UUID
    taken_at: float


class LeaseLost(Exception):
    """The lease could not be renewed in time: the drive stopped; another driver or the
    recovery carries the purchase on."""


class LeaseKeeper:
    def __init__(self, db: asyncpg.Pool, repo: BillingRepository, seconds: float) -> None:
        self._db = db
        self._repo = repo
        self.seconds = seconds
        self._held: dict[uuid.UUID, tuple[PurchaseKey, asyncio.Timeout]] = {}
        metrics.watch_purchases(self, lambda keeper: len(keeper._held))

    def new(self) -> Lease:
        """A lease to take (pass its token to the statement that takes it)."""
        return Lease(uuid.uuid4(), asyncio.get_running_loop().time())

    @asynccontextmanager
    async def held(self, purchase: PurchaseKey, lease: Lease) -> AsyncIterator[None]:
        """Runs the body as the purchase's driver: renewed while it runs, stopped with
        LeaseLost once the lease could have ended."""
        scope = asyncio.timeout_at(lease.taken_at + self.seconds * USABLE_SHARE)
        try:
            async with scope:
                self._held[lease.token] = (purchase, scope)
                try:
                    yield
                finally:
                    del self._held[lease.token]
        except TimeoutError:
            if scope.expired():
                log.warning("purchase %s: lease not renewed in time; drive stopped", purchase[1])
                raise LeaseLost() from None
            raise

    async def renew(self) -> None:
        """Renews every lease this process holds."""
        held = dict(self._held)
        if not held:
            return
        started = asyncio.get_running_loop().time()
        async with self._db.acquire() as conn:
            renewed = await self._repo.renew_leases(
                conn,
                [(purchase, token) for token, (purchase, _) in held.items()],
                self.seconds,
            )
        for token in renewed:
            found = self._held.get(token)
            if found is not None and not found[1].expired():
                found[1].reschedule(started + self.seconds * USABLE_SHARE)

    async def run(self) -> None:
        """The heartbeat: renews the leases held until cancelled."""
        while True:
            await asyncio.sleep(self.seconds / RENEWALS_PER_LEASE)
            try:
                await self.renew()
            except (OSError, asyncpg.PostgresError):
                log.warning("renewing purchase leases failed; will retry", exc_info=True)
            except Exception:
                log.exception("renewing purchase leases failed; will retry")
