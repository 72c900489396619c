"""A company set up through the pool's use cases on the in-memory unit of work."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from libs.common.idempotency import IdempotencyKey
from services.pool.domain.model import (
    Assignee,
    Hold,
    Office,
    PlanKind,
    Source,
    Unit,
    UnitState,
)
from services.pool.use_cases import holds, offices, pools, units
from services.pool.use_cases.allocation import Allocate, Allocated, Allocator
from services.pool.use_cases.holds import HoldExpiry
from services.pool.use_cases.offices import OfficeDirectory
from tests.fakes.pool import FakeTx, InMemoryPoolUnitOfWork

GRACE = timedelta(minutes=30)
R = TypeVar("R")


class Codec:
    """Stands for the wire encoding: bytes that give the allocation back."""

    def __init__(self) -> None:
        self._sent: dict[bytes, Allocated] = {}
        self._count = itertools.count()
        self.encoded = 0

    def encode(self, result: Allocated) -> bytes:
        self.encoded += 1
        data = f"response-{next(self._count)}".encode()
        self._sent[data] = result
        return data

    def decode(self, data: bytes) -> Allocated:
        return self._sent[data]


def key(company_id: uuid.UUID, request_id: str, payload: str = "") -> IdempotencyKey:
    return IdempotencyKey(company_id, request_id, hashlib.sha256(payload.encode()).digest())


@dataclass
class World:
    """One company on an in-memory pool: offices by name, and the use cases to drive it."""

    uow: InMemoryPoolUnitOfWork = field(default_factory=InMemoryPoolUnitOfWork)
    company_id: uuid.UUID = field(default_factory=uuid.uuid4)
    offices: dict[str, uuid.UUID] = field(default_factory=dict)
    codec: Codec = field(default_factory=Codec)

    def __post_init__(self) -> None:
        self.directory = OfficeDirectory(self.uow)
        self.allocator = Allocator(
            self.uow,
            self.directory,
            self.codec.encode,
            max_batch=64,
            max_waiting=64,
            max_keys=8,
            writers=2,
        )
        self.expiry = HoldExpiry(self.uow, retention_hours=24)

    async def run(self, effect: Callable[[FakeTx], Awaitable[R]]) -> R:
        """A one-transaction use case, as `handlers.once` runs it (without the key)."""
        async with self.uow.transaction() as tx:
            return await effect(tx)

    async def office(
        self, name: str, currency: str = "USD", kind: PlanKind = PlanKind.BUNDLE
    ) -> Office:
        office_id = self.offices.setdefault(name, uuid.uuid4())
        office = Office(self.company_id, office_id, currency, kind, primary=False)
        stored = await self.run(lambda tx: offices.put_office(office, tx))
        self.directory.forget(self.company_id, office_id)
        return stored

    async def add(self, office: str, quantity: int, license_type: str = "connect") -> list[Unit]:
        command = units.OfficeUnits(self.company_id, self.offices[office], license_type, quantity)
        return await self.run(lambda tx: units.add_units(command, tx))

    async def mark_for_removal(
        self, office: str, quantity: int, license_type: str = "connect"
    ) -> list[Unit]:
        command = units.OfficeUnits(self.company_id, self.offices[office], license_type, quantity)
        return await self.run(lambda tx: units.mark_for_removal(command, tx))

    async def enable(self, currency: str = "USD") -> pools.Enabled:
        command = pools.EnablePool(self.company_id, currency)
        return await self.run(lambda tx: pools.enable_pool(command, tx))

    def allocation(
        self,
        office: str,
        quantity: int = 1,
        license_type: str = "connect",
        *,
        request_id: str | None = None,
        sources: frozenset[Source] = frozenset(),
        assignees: tuple[Assignee, ...] = (),
        ttl: timedelta | None = None,
        allow_partial: bool = False,
    ) -> Allocate:
        request_id = request_id or str(uuid.uuid4())
        payload = f"{office}/{quantity}/{license_type}/{sorted(sources)}/{assignees}/{ttl}"
        return Allocate(
            key(self.company_id, request_id, payload),
            self.company_id,
            self.offices[office],
            license_type,
            quantity,
            sources,
            assignees,
            ttl,
            allow_partial,
        )

    async def allocate(self, command: Allocate) -> Allocated:
        return self.codec.decode(await self.allocator.allocate(command))

    async def acquire(self, office: str, quantity: int = 1, **how: object) -> Allocated:
        return await self.allocate(self.allocation(office, quantity, **how))  # type: ignore[arg-type]

    async def reserve(
        self, office: str, quantity: int = 1, ttl: timedelta = timedelta(minutes=5), **how: object
    ) -> Allocated:
        return await self.allocate(self.allocation(office, quantity, ttl=ttl, **how))  # type: ignore[arg-type]

    async def acquire_spare(
        self, office: str, quantity: int, license_type: str = "connect"
    ) -> list[Unit]:
        """New units of the office, assigned in it (to be returned later), by id."""
        await self.add(office, quantity, license_type)
        got = await self.acquire(office, quantity, license_type=license_type)
        return sorted(got.units, key=lambda u: u.unit_id)

    async def give_back(self, unit_ids: list[uuid.UUID]) -> list[Unit]:
        command = units.ReturnUnits(self.company_id, tuple(unit_ids), GRACE)
        return await self.run(lambda tx: units.return_units(command, tx))

    async def commit(self, hold: Hold, assignees: tuple[Assignee, ...] = ()) -> holds.Committed:
        command = holds.Commit(self.company_id, hold.hold_id, assignees)
        return await self.run(lambda tx: holds.commit(command, tx))

    async def release(self, hold: Hold) -> Hold:
        command = holds.Release(self.company_id, hold.hold_id)
        return await self.run(lambda tx: holds.release(command, tx))

    async def hold(self, hold: Hold) -> Hold:
        return await holds.get_hold(self.uow, self.company_id, hold.hold_id)

    def units(self, state: UnitState | None = None) -> list[Unit]:
        """The company's units as committed, by id."""
        return sorted(
            (
                u
                for u in self.uow.state.units.values()
                if u.company_id == self.company_id and state in (None, u.state)
            ),
            key=lambda u: u.unit_id,
        )

    def unit(self, unit_id: uuid.UUID) -> Unit:
        return self.uow.state.units[unit_id]

    def advance(self, delta: timedelta) -> None:
        self.uow.clock.advance(seconds=delta.total_seconds())
