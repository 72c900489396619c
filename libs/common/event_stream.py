"""`WatchEvents`: a company's events from the outbox (`libs.common.outbox`), as a stream
that resumes from a cursor. The pool, credits and billing serve it the same way.

- A cursor names a place in one company's stream (after event N). Each event carries
  the cursor after it, and each message the cursor after everything it covers (events
  filtered out by type included), so a consumer resumes exactly where it stopped. The
  first message comes at once, with or without events: its cursor is where the stream
  started.
- Delivery is at least once: a consumer that resumes from an older cursor than the last
  event it processed gets those events again, with the same `event_id`.
- Events of a company come in commit order, without gaps (see the outbox).
- A cursor before the events the retention dropped is CURSOR_EXPIRED (OUT_OF_RANGE),
  with the oldest cursor still served in the error's metadata (`oldest_cursor`).

The stream polls the outbox (one indexed read per interval) instead of having every
commit notify: a notification serializes every committing transaction of the database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import struct
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf import struct_pb2
from pydantic import Field
from pydantic_settings import BaseSettings

from libs.common.database_outage import is_database_unreachable
from libs.common.outbox import EventPage, HasEvents
from libs.common.reasons import Reason
from libs.common.timestamps import timestamp
from libs.common.unit_of_work import UnitOfWork
from libs.common.validation import uuid_field

log = logging.getLogger(__name__)

EVENTS_PER_MESSAGE = 100
_CURSOR = struct.Struct(">B16sQ")  # version, company, position
_CURSOR_VERSION = 1


class EventStreamSettings(BaseSettings):
    """The settings of a service that keeps an event stream (with its env prefix)."""

    event_retention_hours: float = Field(
        default=168,
        gt=0,
        description="How long events are kept; a cursor before them is CURSOR_EXPIRED.",
    )
    event_poll_interval_seconds: float = Field(
        default=0.25, gt=0, description="How often a quiet WatchEvents stream looks again."
    )
    event_purge_interval_seconds: float = Field(
        default=3600, gt=0, description="How often events past the retention are dropped."
    )


@dataclass(frozen=True, slots=True)
class WatchEvents:
    """One stream: a company, the types wanted (empty: all), where to start (`after`
    None: at the oldest event kept, or with `from_latest` after the newest)."""

    company_id: uuid.UUID
    types: tuple[str, ...]
    after: int | None
    from_latest: bool = False


def encode_cursor(company_id: uuid.UUID, position: int) -> str:
    raw = _CURSOR.pack(_CURSOR_VERSION, company_id.bytes, position)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(company_id: uuid.UUID, cursor: str) -> int | None:
    """The position of a cursor of the company's stream (None: empty, no cursor)."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, company, position = _CURSOR.unpack(raw)
    except (binascii.Error, ValueError, struct.error):
        raise _invalid_cursor("is not a cursor this service issued") from None
    if version != _CURSOR_VERSION:
        raise _invalid_cursor("is not a cursor this service issued")
    if company != company_id.bytes:
        raise _invalid_cursor("is a cursor of another company's stream")
    return int(position)


def _invalid_cursor(message: str) -> Exception:
    return Reason.INVALID_CURSOR.error(f"cursor: {message}", {"field": "cursor"})


def event_types(values: Collection[str], known: Collection[str]) -> tuple[str, ...]:
    """The requested types, each one the service publishes (UNKNOWN_EVENT_TYPE)."""
    for value in values:
        if value not in known:
            raise Reason.UNKNOWN_EVENT_TYPE.error(
                f"types: {value[:64]!r} is not an event type of this service",
                {"field": "types", "type": value[:64]},
            )
    return tuple(dict.fromkeys(values))


def command(request: Any, known: Collection[str]) -> WatchEvents:
    """The stream a `WatchEventsRequest` (any service's) asks for."""
    company_id = uuid_field("company_id", request.company_id)
    return WatchEvents(
        company_id,
        event_types(request.types, known),
        decode_cursor(company_id, request.cursor),
        request.from_latest,
    )


async def watch(
    uow: UnitOfWork[HasEvents], command: WatchEvents, poll_interval: float
) -> AsyncIterator[EventPage]:
    """The company's events from the command's start, page by page, until cancelled.
    The first page comes at once, events or not: its cursor is where the stream
    started (with `from_latest`, the consumer's first place to resume from). Later
    pages without events only move the cursor (events filtered out by type)."""
    after = command.after
    if after is None and command.from_latest:
        async with uow.reading() as tx:
            after = (await tx.events.read(command.company_id, 0, (), 0)).last_seq
    first = True
    while True:
        async with uow.reading() as tx:
            page = await tx.events.read(
                command.company_id, after or 0, command.types, EVENTS_PER_MESSAGE
            )
        if after is None:  # from the oldest event kept, as of this read
            after = page.purged_through
        _check_position(command.company_id, after, page)
        if page.scanned_to > after or first:
            yield page
            after, first = page.scanned_to, False
        if len(page.events) < EVENTS_PER_MESSAGE:
            await asyncio.sleep(poll_interval)


def _check_position(company_id: uuid.UUID, after: int, page: EventPage) -> None:
    if after < page.purged_through:
        raise Reason.CURSOR_EXPIRED.error(
            "events after the cursor are past the retention; start again from oldest_cursor",
            {"oldest_cursor": encode_cursor(company_id, page.purged_through)},
        )
    if after > page.last_seq:
        raise _invalid_cursor("is ahead of the company's stream")


def response(page: EventPage, command: WatchEvents, message: Any) -> Any:
    """The page as a `WatchEventsResponse` (`message`, the service's class)."""
    out = message(cursor=encode_cursor(command.company_id, page.scanned_to))
    company = str(command.company_id)
    for event in page.events:
        data = struct_pb2.Struct()
        data.update(event.data)
        out.events.add(
            event_id=str(event.event_id),
            company_id=company,
            type=event.event_type,
            recorded_at=timestamp(event.recorded_at),
            data=data,
            cursor=encode_cursor(command.company_id, event.seq),
        )
    return out


async def purge(uow: UnitOfWork[HasEvents], retention: timedelta) -> int:
    """Drops the events past the retention, company by company; returns how many."""
    async with uow.reading() as tx:
        companies = await tx.events.companies()
    dropped = 0
    for company_id in companies:
        try:
            async with uow.transaction() as tx:
                dropped += await tx.events.purge(company_id, retention)
        except Exception as error:
            if is_database_unreachable(error):
                raise
            log.warning("could not purge the events of %s", company_id, exc_info=True)
    return dropped


class EventStream:
    """One service's `WatchEvents` and retention: its unit of work, settings, the types
    it publishes and its `WatchEventsResponse` class."""

    def __init__(
        self,
        uow: UnitOfWork[HasEvents],
        settings: EventStreamSettings,
        types: Collection[str],
        message: Any,
    ) -> None:
        self._uow = uow
        self._poll_interval = settings.event_poll_interval_seconds
        self._retention = timedelta(hours=settings.event_retention_hours)
        self._purge_interval = settings.event_purge_interval_seconds
        self._types = types
        self._message = message

    async def watch(self, request: Any) -> AsyncIterator[Any]:
        """The handler of `WatchEvents`: the responses of the request's stream."""
        asked = command(request, self._types)
        async for page in watch(self._uow, asked, self._poll_interval):
            yield response(page, asked, self._message)

    async def purge(self) -> int:
        """Drops the events past the retention."""
        return await purge(self._uow, self._retention)

    async def keep_purging(self) -> None:
        """Purges every purge interval until cancelled (a task of every replica); a
        failure waits for the next turn."""
        while True:
            try:
                await self.purge()
            except Exception as error:
                if not is_database_unreachable(error):  # the database watch logs outages
                    log.warning("event purge failed; will retry", exc_info=True)
            await asyncio.sleep(self._purge_interval)
