"""Reading a service's event stream (WatchEvents) in tests: the pool's, credits' or
billing's, whose requests have the same fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import pytest


async def watch(
    stub: Any,
    request: type,
    company_id: str,
    cursor: str = "",
    types: Sequence[str] = (),
    until: int = 0,
) -> tuple[list[Any], str]:
    """The events of the stream from `cursor` until at least `until` of them came (0:
    the first message only), and the cursor of the last message."""
    call = stub.WatchEvents(request(company_id=company_id, cursor=cursor, types=types), timeout=30)
    events: list[Any] = []
    last = cursor
    async for message in call:
        events.extend(message.events)
        last = message.cursor
        if len(events) >= until:
            break
    call.cancel()
    return events, last


async def refused(stub: Any, request: Any) -> grpc.aio.AioRpcError:
    """The error a stream ends with (it must end with one)."""
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for _ in stub.WatchEvents(request, timeout=30):
            pass
    return failed.value
