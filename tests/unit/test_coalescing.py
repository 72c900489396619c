"""The per-key writer: batches, ordering, isolation between keys, load shedding."""

import asyncio
from collections.abc import Sequence

import pytest

from libs.common.coalescing import Coalescer
from libs.common.errors import DeadlineExceeded, ResourceExhausted

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_concurrent_requests_share_batches_in_arrival_order() -> None:
    batches: list[tuple[str, list[int]]] = []

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        batches.append((key, list(items)))
        await asyncio.sleep(0.01)
        return [i * 2 for i in items]

    writer: Coalescer[str, int, int] = Coalescer(handler, max_batch=50)
    results = await asyncio.gather(*(writer.submit("k", i) for i in range(100)))
    assert results == [i * 2 for i in range(100)]
    assert [i for _, items in batches for i in items] == list(range(100))
    assert len(batches) < 100  # coalesced
    assert all(len(items) <= 50 for _, items in batches)


async def test_one_failing_item_fails_alone() -> None:
    async def handler(key: str, items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError("odd") if i % 2 else i for i in items]

    writer: Coalescer[str, int, int] = Coalescer(handler)
    results = await asyncio.gather(
        *(writer.submit("k", i) for i in range(4)), return_exceptions=True
    )
    assert results[0] == 0
    assert results[2] == 2
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], ValueError)


async def test_keys_do_not_wait_for_each_other() -> None:
    release = asyncio.Event()

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        if key == "slow":
            await release.wait()
        return list(items)

    writer: Coalescer[str, int, int] = Coalescer(handler)
    slow = asyncio.create_task(writer.submit("slow", 1))
    assert await asyncio.wait_for(writer.submit("fast", 2), timeout=1) == 2
    assert not slow.done()
    release.set()
    assert await slow == 1


async def test_full_queue_sheds_load() -> None:
    release = asyncio.Event()

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        await release.wait()
        return list(items)

    writer: Coalescer[str, int, int] = Coalescer(handler, max_batch=1, max_waiting=2)
    first = asyncio.create_task(writer.submit("k", 0))
    await asyncio.sleep(0)  # the worker takes item 0
    queued = [asyncio.create_task(writer.submit("k", i)) for i in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted):
        await writer.submit("k", 3)
    release.set()
    assert await first == 0
    assert [await q for q in queued] == [1, 2]


async def test_expired_deadline_is_not_run() -> None:
    ran: list[int] = []
    release = asyncio.Event()

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        await release.wait()
        ran.extend(items)
        return list(items)

    writer: Coalescer[str, int, int] = Coalescer(handler, max_batch=1)
    first = asyncio.create_task(writer.submit("k", 0))
    await asyncio.sleep(0)
    late = asyncio.create_task(writer.submit("k", 1, time_remaining=0.01))
    await asyncio.sleep(0.05)
    release.set()
    assert await first == 0
    with pytest.raises(DeadlineExceeded):
        await late
    assert ran == [0]


async def test_a_deadline_that_cannot_be_met_is_shed_at_once() -> None:
    release = asyncio.Event()

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        if items[0] == 0:
            await asyncio.sleep(0.05)  # the key's pace: about 50 ms per item
        else:
            await release.wait()
        return list(items)

    writer: Coalescer[str, int, int] = Coalescer(handler, max_batch=1)
    first = asyncio.create_task(writer.submit("k", 0))
    slow = asyncio.create_task(writer.submit("k", 1))  # keeps the key busy after the first
    assert await first == 0
    await asyncio.sleep(0)
    queued = [asyncio.create_task(writer.submit("k", i, time_remaining=5)) for i in (2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted):  # three items ahead at ~50 ms each: > 10 ms
        await writer.submit("k", 9, time_remaining=0.01)
    release.set()
    assert await slow == 1
    assert [await q for q in queued] == [2, 3]
