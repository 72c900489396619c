"""An in-memory unit of work with the same all-or-nothing behaviour as a transaction.

A service's fake keeps its tables in one state object; `transaction()` hands the use case
a `Tx` bound to a copy, and keeps the copy only if the block ends without an exception.
Transactions of one fake run one at a time (like the service's per-key locks would
order them).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from libs.common.errors import Aborted, InvalidArgument
from libs.common.idempotency import IdempotencyKey, reused
from libs.common.outbox import Event, EventPage

S = TypeVar("S")
Tx = TypeVar("Tx")


@dataclass
class StoredRequest:
    fingerprint: bytes
    response: bytes | None


@dataclass
class RequestTable:
    """The idempotency table: (company, request_id) -> fingerprint and response."""

    rows: dict[tuple[uuid.UUID, str], StoredRequest] = field(default_factory=dict)


class InMemoryRequestLog:
    """`libs.common.idempotency.RequestLog` on a `RequestTable` (same answers)."""

    def __init__(self, table: RequestTable) -> None:
        self._table = table

    async def claim(self, key: IdempotencyKey) -> bytes | None:
        found = self._table.rows.get(key.ident)
        if found is None:
            self._table.rows[key.ident] = StoredRequest(key.fingerprint, None)
            return None
        if found.fingerprint != key.fingerprint:
            raise reused(key)
        assert found.response is not None, "a committed claim always has its response"
        return found.response

    async def complete(self, key: IdempotencyKey, response: bytes) -> None:
        self._table.rows[key.ident].response = response

    async def lookup(
        self, keys: Sequence[IdempotencyKey]
    ) -> dict[tuple[uuid.UUID, str], bytes | InvalidArgument]:
        answers: dict[tuple[uuid.UUID, str], bytes | InvalidArgument] = {}
        for key in keys:
            found = self._table.rows.get(key.ident)
            if found is None or found.response is None:
                continue
            answers[key.ident] = (
                found.response if found.fingerprint == key.fingerprint else reused(key)
            )
        return answers

    async def record(self, done: Sequence[tuple[IdempotencyKey, bytes]]) -> None:
        for key, response in done:
            if key.ident in self._table.rows:
                raise Aborted("REQUEST_ID_RACE", "a request with the same request_id ran")
            self._table.rows[key.ident] = StoredRequest(key.fingerprint, response)


@dataclass
class EventTable:
    """The outbox: each company's events in order, and how far retention dropped them."""

    events: dict[uuid.UUID, list[Event]] = field(default_factory=dict)
    purged_through: dict[uuid.UUID, int] = field(default_factory=dict)
    last_seq: dict[uuid.UUID, int] = field(default_factory=dict)

    def of_type(self, event_type: str) -> list[Event]:
        """Every kept event of the type, of every company (for assertions)."""
        return [e for kept in self.events.values() for e in kept if e.event_type == event_type]


class InMemoryOutbox:
    """`libs.common.outbox.Outbox` on an `EventTable` (same answers). The table is part
    of the fake's state, so a transaction that fails publishes nothing."""

    def __init__(self, table: EventTable) -> None:
        self._table = table

    def publish(self, company_id: uuid.UUID, event_type: str, data: Mapping[str, Any]) -> None:
        seq = self._table.last_seq.get(company_id, 0) + 1
        self._table.last_seq[company_id] = seq
        event = Event(company_id, seq, uuid.uuid4(), event_type, datetime.now(UTC), dict(data))
        self._table.events.setdefault(company_id, []).append(event)

    async def flush(self) -> None:
        return None

    async def read(
        self, company_id: uuid.UUID, after: int, types: Sequence[str], limit: int
    ) -> EventPage:
        last = self._table.last_seq.get(company_id, 0)
        kept = self._table.events.get(company_id, [])
        found = [e for e in kept if e.seq > after and (not types or e.event_type in types)]
        events = tuple(found[:limit])
        if len(events) == limit:
            scanned_to = events[-1].seq if events else after
        else:
            scanned_to = max(last, after)
        return EventPage(events, scanned_to, last, self._table.purged_through.get(company_id, 0))

    async def purge(self, company_id: uuid.UUID, older_than: timedelta) -> int:
        edge = datetime.now(UTC) - older_than
        kept = self._table.events.get(company_id, [])
        gone = [e for e in kept if e.recorded_at < edge]
        if gone:
            self._table.events[company_id] = kept[len(gone) :]
            self._table.purged_through[company_id] = gone[-1].seq
        return len(gone)

    async def companies(self) -> list[uuid.UUID]:
        return sorted(self._table.last_seq)


class InMemoryUnitOfWork(Generic[S, Tx]):
    """Transactions over a state object `S`; `bind` builds the `Tx` of one copy of it."""

    def __init__(self, state: S, bind: Callable[[S], Tx]) -> None:
        self.state = state
        self._bind = bind
        self._lock = asyncio.Lock()
        self.commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            working = copy.deepcopy(self.state)
            yield self._bind(working)
            self.state = working
            self.commits += 1

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        yield self._bind(self.state)

    @asynccontextmanager
    async def stale_reading(self) -> AsyncIterator[Tx]:
        """A replica that has caught up: the same state."""
        yield self._bind(self.state)
