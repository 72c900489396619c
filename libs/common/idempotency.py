"""request_id idempotency, kept in the same transaction as the effect.

The rule is in docs/product.md, "Behaviour every endpoint shares".

A key is (company, request_id); its fingerprint covers the method and the payload. The
protocol, inside the caller's transaction:

1. `claim` inserts the keys. A key that another transaction is inserting makes us wait
   for it (unique index), so concurrent duplicates are serialized by the database; a key
   already stored comes back with its stored response instead.
2. the caller performs the effects of the claimed keys;
3. `complete` stores their responses, `abandon` drops the claims of requests that failed
   (a failed request has no effect, so it may be retried with the same id).

Same id, same payload: the stored response. Same id, another payload: REQUEST_ID_REUSED.

Writers that already serialize every request that could carry a key (the pool's
allocation batches hold the (company, currency) lock) use the lighter `lookup` + `record`
instead: one write per request, none for a failed one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from google.protobuf.message import Message

from libs.common.errors import Aborted, InvalidArgument, invalid

MAX_REQUEST_ID_LENGTH = 128
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """Who asked (company, request_id) and what exactly (fingerprint)."""

    company_id: uuid.UUID
    request_id: str
    fingerprint: bytes

    @property
    def ident(self) -> tuple[uuid.UUID, str]:
        return (self.company_id, self.request_id)


def key_for(method: str, company_id: uuid.UUID, request: Message) -> IdempotencyKey:
    """The key of a mutating request; its request_id field must be set."""
    request_id: str = getattr(request, "request_id", "")
    if not request_id:
        raise invalid("request_id", "is required on every mutating request")
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise invalid("request_id", f"is longer than {MAX_REQUEST_ID_LENGTH} characters")
    payload = type(request)()
    payload.CopyFrom(request)
    payload.ClearField("request_id")
    digest = hashlib.sha256(method.encode())
    digest.update(payload.SerializeToString(deterministic=True))
    return IdempotencyKey(company_id, request_id, digest.digest())


def reused(key: IdempotencyKey) -> InvalidArgument:
    return InvalidArgument(
        "REQUEST_ID_REUSED",
        "request_id was already used for a different request",
        {"request_id": key.request_id},
    )


def ddl(schema: str) -> str:
    """The table a service's migration creates in its schema."""
    return f"""
    CREATE TABLE {schema}.idempotency_keys (
        company_id uuid NOT NULL,
        request_id text NOT NULL,
        fingerprint bytea NOT NULL,
        response bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (company_id, request_id)
    );
    CREATE INDEX idempotency_keys_created_at ON {schema}.idempotency_keys (created_at);
    """


class IdempotencyStore:
    """The idempotency table of one service schema."""

    def __init__(self, schema: str) -> None:
        table = f"{schema}.idempotency_keys"
        self._table = table
        self._claim = f"""
            INSERT INTO {table} (company_id, request_id, fingerprint)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])
            ON CONFLICT DO NOTHING
            RETURNING company_id, request_id
        """
        # A separate statement: it must see rows committed while the insert waited.
        self._stored = self.stored_sql("$1", "$2")
        self._record = self.record_sql("$1", "$2", "$3", "$4")
        self._complete = f"""
            UPDATE {table} k SET response = d.response
            FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS d(c, r, response)
            WHERE k.company_id = d.c AND k.request_id = d.r
        """
        self._abandon = f"""
            DELETE FROM {table} k USING unnest($1::uuid[], $2::text[]) AS d(c, r)
            WHERE k.company_id = d.c AND k.request_id = d.r AND k.response IS NULL
        """
        self._purge = f"DELETE FROM {table} WHERE created_at < now() - make_interval(hours => $1)"

    def stored_sql(self, companies: str, request_ids: str) -> str:
        """The stored rows (company_id, request_id, fingerprint, response) of the keys
        given as two array parameters, e.g. `$1`, `$2`: for `answers`, here or as a part
        of a caller's statement. Each key is one probe of the primary key (the subquery
        is not flattened: a plan made while the table was small, kept by a prepared
        statement, would otherwise read the whole table for every batch)."""
        return f"""
            SELECT k.company_id, k.request_id, k.fingerprint, k.response
            FROM unnest({companies}::uuid[], {request_ids}::text[]) AS w(c, r)
            CROSS JOIN LATERAL (
                SELECT * FROM {self._table} k
                WHERE k.company_id = w.c AND k.request_id = w.r LIMIT 1) k
        """

    def record_sql(
        self, companies: str, request_ids: str, fingerprints: str, responses: str
    ) -> str:
        """The insert of `record` on four array parameters, returning a row per key
        stored: a caller may make it a part (CTE) of its own statement, pass
        `record_arrays` and check the count with `check_recorded`."""
        return f"""
            INSERT INTO {self._table} (company_id, request_id, fingerprint, response)
            SELECT * FROM unnest({companies}::uuid[], {request_ids}::text[],
                                 {fingerprints}::bytea[], {responses}::bytea[])
            ON CONFLICT DO NOTHING
            RETURNING request_id
        """

    @staticmethod
    def record_arrays(done: Sequence[tuple[IdempotencyKey, bytes]]) -> list[list[Any]]:
        """The parameters of `record_sql`, in its order."""
        return [
            [k.company_id for k, _ in done],
            [k.request_id for k, _ in done],
            [k.fingerprint for k, _ in done],
            [r for _, r in done],
        ]

    @staticmethod
    def check_recorded(done: Sequence[tuple[IdempotencyKey, bytes]], stored: int) -> None:
        """A key stored meanwhile by a writer the lock did not serialize (same
        request_id, another payload) raises ABORTED: the caller's transaction must roll
        back; the retry finds the stored key."""
        if stored != len(done):
            raise Aborted("REQUEST_ID_RACE", "a request with the same request_id ran meanwhile")

    async def claim(
        self, conn: asyncpg.Connection, keys: Sequence[IdempotencyKey]
    ) -> dict[tuple[uuid.UUID, str], bytes | InvalidArgument]:
        """Claims the keys. Keys that were already used come back with their stored
        response, or REQUEST_ID_REUSED if they were used for another payload; keys that
        do not come back are claimed and their effects are the caller's to perform.

        Keys must be distinct (the caller folds duplicates within one batch).
        """
        if not keys:
            return {}
        inserted = await conn.fetch(
            self._claim,
            [k.company_id for k in keys],
            [k.request_id for k in keys],
            [k.fingerprint for k in keys],
        )
        if len(inserted) == len(keys):
            return {}
        fresh = {(row["company_id"], row["request_id"]) for row in inserted}
        taken = [k for k in keys if k.ident not in fresh]
        rows = await conn.fetch(
            self._stored, [k.company_id for k in taken], [k.request_id for k in taken]
        )
        return self.answers(taken, rows)

    @staticmethod
    def answers(
        keys: Sequence[IdempotencyKey], rows: Sequence[asyncpg.Record]
    ) -> dict[tuple[uuid.UUID, str], bytes | InvalidArgument]:
        """The stored rows of `keys` (`stored_sql`) as answers: the stored response, or
        REQUEST_ID_REUSED for another payload."""
        by_ident = {k.ident: k for k in keys}
        stored: dict[tuple[uuid.UUID, str], bytes | InvalidArgument] = {}
        for row in rows:
            key = by_ident[(row["company_id"], row["request_id"])]
            if bytes(row["fingerprint"]) != key.fingerprint:
                stored[key.ident] = reused(key)
            else:
                # A committed key always has its response: failed requests are abandoned.
                stored[key.ident] = bytes(row["response"])
        return stored

    async def lookup(
        self, conn: asyncpg.Connection, keys: Sequence[IdempotencyKey]
    ) -> dict[tuple[uuid.UUID, str], bytes | InvalidArgument]:
        """The stored responses of keys already used (REQUEST_ID_REUSED for another
        payload). Claims nothing: for writers that hold a lock serializing every request
        that could carry these keys, and then `record` their responses (one write)."""
        if not keys:
            return {}
        rows = await conn.fetch(
            self._stored, [k.company_id for k in keys], [k.request_id for k in keys]
        )
        return self.answers(keys, rows)

    async def record(
        self, conn: asyncpg.Connection, done: Sequence[tuple[IdempotencyKey, bytes]]
    ) -> None:
        """Stores responses after `lookup`. A key stored meanwhile by a writer the lock
        did not serialize (same request_id, another payload) raises ABORTED: the
        caller's transaction must roll back; the retry finds the stored key."""
        if not done:
            return
        inserted = await conn.fetch(self._record, *self.record_arrays(done))
        self.check_recorded(done, len(inserted))

    async def complete(
        self, conn: asyncpg.Connection, done: Iterable[tuple[IdempotencyKey, bytes]]
    ) -> None:
        pairs = list(done)
        if pairs:
            await conn.execute(
                self._complete,
                [k.company_id for k, _ in pairs],
                [k.request_id for k, _ in pairs],
                [r for _, r in pairs],
            )

    async def abandon(self, conn: asyncpg.Connection, keys: Sequence[IdempotencyKey]) -> None:
        if keys:
            await conn.execute(
                self._abandon, [k.company_id for k in keys], [k.request_id for k in keys]
            )

    async def purge(self, conn: asyncpg.Connection, retention_hours: int) -> int:
        """Drops keys older than the retention; returns how many."""
        result: str = await conn.execute(self._purge, retention_hours)
        return int(result.split()[-1])


@dataclass(frozen=True, slots=True)
class Once(Generic[R]):
    """A mutating request's key, and how its response is stored (and replayed)."""

    key: IdempotencyKey
    encode: Callable[[R], bytes]


async def run_once(
    conn: asyncpg.Connection,
    store: IdempotencyStore,
    once: Once[R],
    effect: Callable[[], Awaitable[R]],
) -> bytes:
    """Runs `effect` at most once per key, inside the caller's transaction; returns the
    encoded response, fresh or stored. If `effect` raises, the transaction (and with it
    the claim) must be rolled back by the caller."""
    stored = await store.claim(conn, [once.key])
    if once.key.ident in stored:
        found = stored[once.key.ident]
        if isinstance(found, InvalidArgument):
            raise found
        return found
    encoded = once.encode(await effect())
    await store.complete(conn, [(once.key, encoded)])
    return encoded


class RequestLog(Protocol):
    """The request_ids of one transaction (a service's `tx.requests`)."""

    async def claim(self, key: IdempotencyKey) -> bytes | None:
        """Claims the key for this transaction: None if it is new (the caller performs
        the effect, then `complete`s it); the stored response if it was done before.
        Raises REQUEST_ID_REUSED if it was used for another payload."""
        ...

    async def complete(self, key: IdempotencyKey, response: bytes) -> None:
        """Stores the response of a claimed key (in the effect's transaction)."""
        ...

    async def lookup(
        self, keys: Sequence[IdempotencyKey]
    ) -> dict[tuple[uuid.UUID, str], bytes | InvalidArgument]:
        """See `IdempotencyStore.lookup` (for writers that serialize by a lock)."""
        ...

    async def record(self, done: Sequence[tuple[IdempotencyKey, bytes]]) -> None:
        """See `IdempotencyStore.record`."""
        ...


class RequestIds:
    """The request_ids kept for idempotency, as a whole: old ones are dropped."""

    def __init__(self, conn: asyncpg.Connection, store: IdempotencyStore) -> None:
        self._conn = conn
        self._store = store

    async def purge(self, retention_hours: int) -> int:
        """Drops keys older than the retention; returns how many."""
        return await self._store.purge(self._conn, retention_hours)


class PostgresRequestLog:
    """`RequestLog` on one connection of the service's schema."""

    def __init__(self, conn: asyncpg.Connection, store: IdempotencyStore) -> None:
        self._conn = conn
        self._store = store

    async def claim(self, key: IdempotencyKey) -> bytes | None:
        stored = await self._store.claim(self._conn, [key])
        found = stored.get(key.ident)
        if isinstance(found, InvalidArgument):
            raise found
        return found

    async def complete(self, key: IdempotencyKey, response: bytes) -> None:
        await self._store.complete(self._conn, [(key, response)])

    async def lookup(
        self, keys: Sequence[IdempotencyKey]
    ) -> dict[tuple[uuid.UUID, str], bytes | InvalidArgument]:
        return await self._store.lookup(self._conn, keys)

    async def record(self, done: Sequence[tuple[IdempotencyKey, bytes]]) -> None:
        await self._store.record(self._conn, done)
