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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from libs.common.errors import Aborted, InvalidArgument
from libs.common.idempotency import IdempotencyKey, reused

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
