"""The pool's event stream (WatchEvents) on a real PostgreSQL: what a change publishes,
resuming from a cursor, filters, tenant scoping, retention, and the commit order that
makes resuming safe under concurrent transactions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import grpc
import pytest

from libs.common import event_stream
from libs.common.error_status import error_info
from libs.common.outbox import PostgresOutbox
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp
from tests.support.events import refused
from tests.support.events import watch as events_of
from tests.support.pool import Company, new_company, reason_of, rid, running_pool

pytestmark = pytest.mark.asyncio(loop_scope="session")

Stub = pool_pb2_grpc.PoolServiceStub


async def watch(
    stub: Stub, company_id: str, cursor: str = "", types: Sequence[str] = (), until: int = 0
) -> tuple[list[pb.Event], str]:
    return await events_of(stub, pb.WatchEventsRequest, company_id, cursor, types, until)


async def story(company: Company) -> list[str]:
    """Units added, one acquired, then returned: returns the added unit ids."""
    await company.office("hq", "USD")
    added = await company.add("hq", "connect", 2)
    acquired = await company.acquire("hq", "connect")
    await company.give_back([u.unit_id for u in acquired.units])
    return added


async def test_a_change_publishes_its_events_in_order_and_a_cursor_resumes_after_one(
    stub: Stub, company: Company
) -> None:
    added = await story(company)

    events, _ = await watch(stub, company.company_id, until=3)

    assert [e.type for e in events] == [
        "pool.units.added",
        "pool.units.acquired",
        "pool.units.returned",
    ]
    assert {e.company_id for e in events} == {company.company_id}
    assert list(events[0].data["unit_ids"]) == added
    assert events[1].data["office_id"] == company.offices["hq"]
    assert events[1].data["receipt_id"]
    # Resuming after the first event gets the others again, with the same ids.
    again, _ = await watch(stub, company.company_id, cursor=events[0].cursor, until=2)
    assert [e.event_id for e in again] == [e.event_id for e in events[1:]]


async def test_new_events_reach_an_open_stream_and_from_latest_skips_the_past(
    stub: Stub, company: Company
) -> None:
    await company.office("hq", "USD")
    await company.add("hq", "connect", 1)
    call = stub.WatchEvents(
        pb.WatchEventsRequest(company_id=company.company_id, from_latest=True), timeout=30
    )
    stream = aiter(call)
    first = await anext(stream)  # at once, with the cursor where the stream starts
    assert not first.events
    assert first.cursor
    await company.acquire("hq", "connect")
    later = await anext(stream)
    call.cancel()
    assert [e.type for e in later.events] == ["pool.units.acquired"]
    resumed, _ = await watch(stub, company.company_id, cursor=first.cursor, until=1)
    assert [e.event_id for e in resumed] == [e.event_id for e in later.events]


async def test_a_type_filter_sends_only_those_and_its_cursor_moves_past_the_others(
    stub: Stub, company: Company
) -> None:
    await story(company)

    events, cursor = await watch(stub, company.company_id, types=["pool.units.returned"], until=1)

    assert [e.type for e in events] == ["pool.units.returned"]
    await company.acquire("hq", "connect")  # filtered out
    await company.add("hq", "connect", 1)  # filtered out
    quiet, moved = await watch(
        stub, company.company_id, cursor=cursor, types=["pool.units.returned"]
    )
    assert quiet == []
    assert moved != cursor
    everything, _ = await watch(stub, company.company_id, cursor=cursor, until=2)
    assert [e.type for e in everything] == ["pool.units.acquired", "pool.units.added"]


async def test_an_unknown_type_is_invalid_argument(stub: Stub, company: Company) -> None:
    error = await refused(
        stub, pb.WatchEventsRequest(company_id=company.company_id, types=["pool.nothing"])
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "UNKNOWN_EVENT_TYPE"


async def test_a_stream_holds_its_company_s_events_only_and_refuses_another_s_cursor(
    stub: Stub, company: Company
) -> None:
    other = new_company(stub)
    await story(other)
    await company.office("hq", "USD")
    await company.add("hq", "connect", 1)

    mine, _ = await watch(stub, company.company_id, until=1)
    theirs, their_cursor = await watch(stub, other.company_id, until=3)

    assert [e.type for e in mine] == ["pool.units.added"]
    assert not {e.event_id for e in mine} & {e.event_id for e in theirs}
    error = await refused(
        stub, pb.WatchEventsRequest(company_id=company.company_id, cursor=their_cursor)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_CURSOR"
    for garbage in ("not-a-cursor", "AAAA"):
        error = await refused(
            stub, pb.WatchEventsRequest(company_id=company.company_id, cursor=garbage)
        )
        assert reason_of(error) == "INVALID_CURSOR"


async def test_a_refused_change_publishes_nothing(stub: Stub, company: Company) -> None:
    await company.office("hq", "USD")
    await company.add("hq", "connect", 1)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.MarkForRemoval(
            pb.MarkForRemovalRequest(
                request_id=rid(),
                company_id=company.company_id,
                office_id=company.offices["hq"],
                license_type="connect",
                quantity=5,
            )
        )
    assert reason_of(failed.value) == "NOT_ENOUGH_SPARE"
    _, cursor = await watch(stub, company.company_id, until=1)
    await company.add("hq", "connect", 1)
    after, _ = await watch(stub, company.company_id, cursor=cursor, until=1)
    assert [e.type for e in after] == ["pool.units.added"]


async def test_a_cursor_older_than_the_retention_is_out_of_range(database_url: str) -> None:
    # A retention of a few milliseconds: every event is past it by the time of the purge.
    async with running_pool(
        database_url, sweep_interval_seconds=3600, event_retention_hours=0.000001
    ) as (app, stub):
        company = new_company(stub)
        await story(company)
        events, _ = await watch(stub, company.company_id, until=3)
        await asyncio.sleep(0.05)

        assert await app.events.purge() >= 3

        error = await refused(
            stub, pb.WatchEventsRequest(company_id=company.company_id, cursor=events[0].cursor)
        )
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE
        info = error_info(error)
        assert info is not None
        assert info.reason == "CURSOR_EXPIRED"
        # The oldest cursor still served continues with what comes next.
        await company.add("hq", "connect", 1)
        after, _ = await watch(
            stub, company.company_id, cursor=info.metadata["oldest_cursor"], until=1
        )
        assert [e.type for e in after] == ["pool.units.added"]
        fresh, _ = await watch(stub, company.company_id, until=1)  # no cursor: the oldest kept
        assert [e.event_id for e in fresh] == [e.event_id for e in after]


async def test_sequence_order_is_commit_order_and_a_reader_never_passes_an_uncommitted_event(
    pool_service: tuple[PoolApp, Stub],
) -> None:
    """Two transactions of one company that do not share a lock (the pool's locks are
    per currency): the one that publishes first holds the company's head until it
    commits, so the other numbers its events after it, and a reader sees neither
    until the first commits."""
    app, _ = pool_service
    company_id = uuid.uuid4()

    async def transaction(name: str, hold_for: float, flushed: asyncio.Event) -> float:
        async with app.db.acquire() as conn, conn.transaction():
            outbox = PostgresOutbox(conn, "pool")
            outbox.publish(company_id, "pool.units.added", {"name": name})
            await outbox.flush()
            flushed.set()
            await asyncio.sleep(hold_for)
        return time.monotonic()

    first_flushed, second_flushed = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(transaction("first", 0.5, first_flushed))
    await first_flushed.wait()
    second = asyncio.create_task(transaction("second", 0, second_flushed))
    await asyncio.sleep(0.2)
    assert not second_flushed.is_set()  # waits for the company's head
    async with app.db.acquire() as conn:
        before = await PostgresOutbox(conn, "pool").read(company_id, 0, (), 10)
    assert before.events == ()
    assert before.last_seq == 0
    first_committed, second_committed = await asyncio.gather(first, second)

    assert first_committed <= second_committed
    async with app.db.acquire() as conn:
        page = await PostgresOutbox(conn, "pool").read(company_id, 0, (), 10)
    assert [(e.seq, e.data["name"]) for e in page.events] == [(1, "first"), (2, "second")]


async def test_concurrent_writers_leave_no_gap_a_reader_could_skip(
    pool_service: tuple[PoolApp, Stub],
) -> None:
    """Writers of one company commit in random order while a reader follows by
    position: every read is the next events without a gap, and it ends with all."""
    app, _ = pool_service
    company_id = uuid.uuid4()
    writers, each = 12, 5

    async def writer(n: int) -> None:
        for k in range(each):
            async with app.db.acquire() as conn, conn.transaction():
                outbox = PostgresOutbox(conn, "pool")
                outbox.publish(company_id, "pool.units.added", {"n": n, "k": k})
                outbox.publish(company_id, "pool.units.returned", {"n": n, "k": k})
                await asyncio.sleep(0.001 * ((n * 7 + k * 3) % 5))  # work before the flush
                await outbox.flush()
                await asyncio.sleep(0.001 * ((n + k) % 3))  # and after it

    async def reader(db: asyncpg.Pool, stop: asyncio.Event) -> list[int]:
        seen: list[int] = []
        while True:
            done = stop.is_set()
            async with db.acquire() as conn:
                page = await PostgresOutbox(conn, "pool").read(
                    company_id, seen[-1] if seen else 0, (), 7
                )
            expected = list(range(len(seen) + 1, len(seen) + 1 + len(page.events)))
            assert [e.seq for e in page.events] == expected
            seen.extend(e.seq for e in page.events)
            if done and not page.events:
                return seen
            await asyncio.sleep(0.002)

    stop = asyncio.Event()
    following = asyncio.create_task(reader(app.db, stop))
    await asyncio.gather(*(writer(n) for n in range(writers)))
    stop.set()
    assert await following == list(range(1, writers * each * 2 + 1))


async def test_the_stream_resumes_after_events_dropped_by_the_purge_of_another_company(
    pool_service: tuple[PoolApp, Stub], company: Company
) -> None:
    """Purging is per company: a company whose events are young keeps them all."""
    app, stub = pool_service
    await story(company)
    async with app.db.acquire() as conn:
        assert await PostgresOutbox(conn, "pool").purge(uuid.uuid4(), timedelta(0)) == 0
        assert (
            await PostgresOutbox(conn, "pool").purge(
                uuid.UUID(company.company_id), timedelta(hours=1)
            )
            == 0
        )
    events, _ = await watch(stub, company.company_id, until=3)
    assert len(events) == 3
    assert event_stream.decode_cursor(uuid.UUID(company.company_id), events[-1].cursor) == 3
