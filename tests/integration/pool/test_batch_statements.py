"""What an allocation batch sends to PostgreSQL (docs/performance.md, "Where PostgreSQL's
time goes in a batch"): six round trips whatever its size, the writers' locks with its
BEGIN, and a request-id lookup whose plan does not grow with the table."""

import asyncio
import uuid

import asyncpg
import pytest

from libs.common.clock import FakeClock
from libs.common.errors import Aborted
from libs.common.idempotency import IdempotencyKey, IdempotencyStore, ddl, key_for
from libs.common.key_locks import lock_keys, lock_statement
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.api import convert
from services.pool.unit_of_work import unit_of_work
from services.pool.use_cases.allocation import Allocate, Allocator
from services.pool.use_cases.offices import OfficeDirectory
from tests.support.pool import rid
from tests.support.races import pool_with_claimable_units

pytestmark = pytest.mark.asyncio(loop_scope="session")


def acquire(company_id: str, office_id: str) -> Allocate:
    request = pb.AcquireRequest(
        request_id=rid(),
        company_id=company_id,
        office_id=office_id,
        license_type="connect",
        quantity=1,
    )
    key = key_for("/licensing.pool.v1.PoolService/Acquire", uuid.UUID(company_id), request)
    return Allocate(key, uuid.UUID(company_id), uuid.UUID(office_id), "connect", 1, frozenset())


async def test_an_allocation_batch_is_six_round_trips(
    stub: pool_pb2_grpc.PoolServiceStub, database_url: str, clock: FakeClock
) -> None:
    company = await pool_with_claimable_units(stub, units=13, offices=3)
    sent: list[str] = []

    async def logged(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda query: sent.append(query.query))

    db = await asyncpg.create_pool(database_url, min_size=1, max_size=1, init=logged)
    try:
        uow = unit_of_work(db, clock)
        directory = OfficeDirectory(uow)
        allocator = Allocator(
            uow, directory, convert.allocated, max_batch=64, max_waiting=64, max_keys=8, writers=1
        )
        offices = list(company.offices.values())
        for office_id in offices:  # the directory's reads, outside the batches
            await directory.get(uuid.UUID(company.company_id), uuid.UUID(office_id))
        # A first batch: asyncpg reads the types of a new connection's statements once.
        await allocator.allocate(acquire(company.company_id, offices[0]))
        sent.clear()
        commands = [acquire(company.company_id, offices[i % 3]) for i in range(9)]
        answers = await asyncio.gather(*(allocator.allocate(c) for c in commands))
        await allocator.close()
    finally:
        await db.close()

    units = [pb.AcquireResponse.FromString(a).units[0].unit_id for a in answers]
    assert len(set(units)) == 9
    batches: list[list[str]] = []
    for query in sent:
        if query.startswith("BEGIN;"):
            batches.append([])
        if batches and (len(batches[-1]) == 0 or batches[-1][-1] != "COMMIT"):
            batches[-1].append(query)
    assert batches, sent
    for batch in batches:
        # BEGIN + locks, open, candidates, hand-out, store, COMMIT
        assert len(batch) == 6, batch
        assert batch[-1] == "COMMIT"


async def test_the_locks_sent_with_begin_are_the_writers_locks(db: asyncpg.Pool) -> None:
    company_id = uuid.uuid4()
    async with db.acquire() as holder, db.acquire() as writer:
        await holder.execute(
            f"BEGIN; {lock_statement('pool', [(company_id, 'USD'), (uuid.uuid4(), 'EUR')])}"
        )
        try:
            async with writer.transaction():
                await writer.execute("SET LOCAL lock_timeout = '200ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await lock_keys(writer, "pool", [(company_id, "USD")], None)
            async with writer.transaction():  # another key is free
                await lock_keys(writer, "pool", [(company_id, "EUR")], None)
        finally:
            await holder.execute("ROLLBACK")


async def test_the_request_id_lookup_probes_the_primary_key_whatever_the_statistics(
    db: asyncpg.Pool,
) -> None:
    # Statistics taken while the table was small, and a plan kept for the connection
    # (a generic plan of a prepared statement): the lookup must still read the keys it
    # is given, not the table.
    schema = f"lookup_{uuid.uuid4().hex[:8]}"
    company_id = uuid.uuid4()
    store = IdempotencyStore(schema)
    async with db.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
        try:
            await conn.execute(ddl(schema))
            fill = f"""
                INSERT INTO {schema}.idempotency_keys (company_id, request_id, fingerprint)
                SELECT $1, gen_random_uuid()::text, '\\x00' FROM generate_series(1, $2)
            """
            await conn.execute(fill, company_id, 20)
            await conn.execute(f"ANALYZE {schema}.idempotency_keys")
            await conn.execute(fill, company_id, 20_000)
            async with conn.transaction():
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                statement = await conn.prepare(
                    "EXPLAIN (FORMAT TEXT) " + store.stored_sql("$1", "$2")
                )
                plan = "\n".join(
                    r[0] for r in await statement.fetch([company_id] * 30, [rid()] * 30)
                )
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    assert "Seq Scan" not in plan, plan
    assert "idempotency_keys_pkey" in plan, plan


async def test_a_request_id_stored_meanwhile_writes_nothing_of_the_batch(
    db: asyncpg.Pool, clock: FakeClock
) -> None:
    # Another writer (one the batch's locks do not serialize) stores one of the batch's
    # request ids between its lookup and its writes: the one statement of the writes
    # counts the responses it stored, raises ABORTED (the batch is then retried request
    # by request), and none of the batch's responses or events is left.
    company_id = uuid.uuid4()
    taken, fresh = (IdempotencyKey(company_id, rid(), b"mine") for _ in range(2))
    uow = unit_of_work(db, clock)

    async def batch() -> None:
        async with uow.locked([(company_id, "USD")]) as tx:
            opened = await tx.allocations.open([(company_id, "USD")], [], [taken, fresh])
            assert opened.stored == {}
            await db.execute(
                "INSERT INTO pool.idempotency_keys (company_id, request_id, fingerprint,"
                " response) VALUES ($1, $2, 'another', 'stored')",
                company_id,
                taken.request_id,
            )
            tx.events.publish(company_id, "pool.units_acquired", {"unit_ids": []})
            await tx.allocations.store(opened.now, [], [], [(fresh, b"a"), (taken, b"b")])

    with pytest.raises(Aborted, match="same request_id"):
        await batch()
    events = "SELECT count(*) FROM pool.events WHERE company_id = $1"
    assert await db.fetchval(events, company_id) == 0
    ids = "SELECT array_agg(request_id) FROM pool.idempotency_keys WHERE company_id = $1"
    assert await db.fetchval(ids, company_id) == [taken.request_id]
