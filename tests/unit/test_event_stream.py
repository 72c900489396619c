"""The event stream's rules (libs/common/event_stream.py) on the in-memory outbox: cursors,
where a stream starts, filters, expiry, and that a failed transaction publishes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from libs.common import event_stream
from libs.common.errors import DomainError
from libs.common.event_stream import WatchEvents
from libs.common.outbox import EventPage
from tests.fakes.unit_of_work import EventTable, InMemoryOutbox, InMemoryUnitOfWork

COMPANY = uuid.uuid4()


@dataclass(frozen=True, slots=True)
class Tx:
    events: InMemoryOutbox


@dataclass
class State:
    events: EventTable


def unit_of_work() -> InMemoryUnitOfWork[State, Tx]:
    return InMemoryUnitOfWork(State(EventTable()), lambda state: Tx(InMemoryOutbox(state.events)))


async def publish(uow: InMemoryUnitOfWork[State, Tx], *types: str) -> None:
    async with uow.transaction() as tx:
        for event_type in types:
            tx.events.publish(COMPANY, event_type, {"n": 1})


async def pages(
    uow: InMemoryUnitOfWork[State, Tx], command: WatchEvents, count: int
) -> list[EventPage]:
    stream: AsyncIterator[EventPage] = event_stream.watch(uow, command, poll_interval=0.001)
    found = [await anext(stream) for _ in range(count)]
    await stream.aclose()  # type: ignore[attr-defined]
    return found


def test_a_cursor_names_its_company_and_position() -> None:
    cursor = event_stream.encode_cursor(COMPANY, 42)
    assert event_stream.decode_cursor(COMPANY, cursor) == 42
    assert event_stream.decode_cursor(COMPANY, "") is None
    for bad, company in ((cursor, uuid.uuid4()), ("nonsense", COMPANY), (cursor[:-2], COMPANY)):
        with pytest.raises(DomainError) as refused:
            event_stream.decode_cursor(company, bad)
        assert refused.value.reason == "INVALID_CURSOR"


def test_only_the_service_s_types_may_be_asked_for() -> None:
    assert event_stream.event_types(["a", "b", "a"], {"a", "b"}) == ("a", "b")
    with pytest.raises(DomainError) as refused:
        event_stream.event_types(["c"], {"a", "b"})
    assert refused.value.reason == "UNKNOWN_EVENT_TYPE"


async def test_a_stream_starts_at_the_oldest_event_or_after_the_newest() -> None:
    uow = unit_of_work()
    await publish(uow, "a", "b")

    [everything] = await pages(uow, WatchEvents(COMPANY, (), None), 1)
    [latest] = await pages(uow, WatchEvents(COMPANY, (), None, from_latest=True), 1)

    assert [e.event_type for e in everything.events] == ["a", "b"]
    assert latest.events == ()
    assert latest.scanned_to == 2


async def test_filtered_out_events_move_the_cursor_without_a_message_of_events() -> None:
    uow = unit_of_work()
    await publish(uow, "a")
    stream = event_stream.watch(uow, WatchEvents(COMPANY, ("b",), 0), poll_interval=0.001)
    first = await anext(stream)
    assert first.events == ()
    assert first.scanned_to == 1
    await publish(uow, "a", "b")
    second = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert [(e.seq, e.event_type) for e in second.events] == [(3, "b")]
    assert second.scanned_to == 3


async def test_a_cursor_before_the_purged_events_is_expired_and_names_the_oldest() -> None:
    uow = unit_of_work()
    await publish(uow, "a", "b")
    await asyncio.sleep(0.01)
    assert await event_stream.purge(uow, timedelta(0)) == 2
    await publish(uow, "c")

    with pytest.raises(DomainError) as expired:
        await pages(uow, WatchEvents(COMPANY, (), 1), 1)

    assert expired.value.reason == "CURSOR_EXPIRED"
    oldest = expired.value.metadata["oldest_cursor"]
    after = event_stream.decode_cursor(COMPANY, oldest)
    [page] = await pages(uow, WatchEvents(COMPANY, (), after), 1)
    assert [e.event_type for e in page.events] == ["c"]
    with pytest.raises(DomainError) as ahead:
        await pages(uow, WatchEvents(COMPANY, (), 99), 1)
    assert ahead.value.reason == "INVALID_CURSOR"


async def test_a_failed_transaction_publishes_nothing() -> None:
    uow = unit_of_work()

    async def failing() -> None:
        async with uow.transaction() as tx:
            tx.events.publish(COMPANY, "a", {})
            raise RuntimeError("the effect failed")

    with pytest.raises(RuntimeError):
        await failing()
    [page] = await pages(uow, WatchEvents(COMPANY, (), None), 1)
    assert page.events == ()
    assert page.last_seq == 0
