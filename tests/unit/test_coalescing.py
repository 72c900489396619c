"""The per-key writer: batches, ordering, isolation between keys, load shedding."""

import asyncio
from collections.abc import Sequence

import pytest
from google.rpc import error_details_pb2

from libs.common.coalescing import Coalescer
from libs.common.errors import ResourceExhausted

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
    with pytest.raises(ResourceExhausted) as refused:
        await writer.submit("k", 3)
    assert refused.value.reason == "OVERLOADED"
    assert retry_delay(refused.value) > 0
    release.set()
    assert await first == 0
    assert [await q for q in queued] == [1, 2]


def retry_delay(error: ResourceExhausted) -> float:
    """The retry delay the refusal suggests (its one RetryInfo detail), in seconds."""
    (info,) = [d for d in error.details if isinstance(d, error_details_pb2.RetryInfo)]
    return float(info.retry_delay.ToNanoseconds()) / 1e9


async def test_a_queued_request_is_refused_before_its_deadline_and_never_run() -> None:
    ran: list[int] = []
    release = asyncio.Event()

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        await release.wait()
        ran.extend(items)
        return list(items)

    writer: Coalescer[str, int, int] = Coalescer(handler, max_batch=1)
    first = asyncio.create_task(writer.submit("k", 0))
    await asyncio.sleep(0)  # the worker takes item 0 and blocks
    loop = asyncio.get_running_loop()
    submitted = loop.time()
    with pytest.raises(ResourceExhausted) as refused:
        await asyncio.wait_for(writer.submit("k", 1, time_remaining=1.0), timeout=5)
    assert loop.time() - submitted < 1.0  # the caller hears back before its deadline
    assert not first.done()  # on the server's own initiative, while the batch ahead runs
    assert refused.value.reason == "OVERLOADED"
    assert retry_delay(refused.value) > 0
    release.set()
    assert await first == 0
    assert ran == [0]


async def test_a_batch_takes_only_requests_it_can_answer_before_they_are_due() -> None:
    ran: list[int] = []
    gate = asyncio.Event()

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        if items[0] == 0:
            await gate.wait()
        else:
            await asyncio.sleep(0.3)  # the key's batches take about 0.3 s
        ran.extend(items)
        return list(items)

    writer: Coalescer[str, int, int] = Coalescer(handler, max_batch=1)
    assert await writer.submit("k", -1) == -1  # teaches the writer its pace
    held = asyncio.create_task(writer.submit("k", 0))
    await asyncio.sleep(0)
    late = asyncio.create_task(writer.submit("k", 1, time_remaining=1.0))
    await asyncio.sleep(0.7)  # item 1 is due in 0.2 s: a 0.3 s batch would answer it late
    gate.set()
    with pytest.raises(ResourceExhausted):
        await late
    assert await held == 0
    assert ran == [-1, 0]


async def test_a_long_queue_after_small_batches_does_not_look_hopeless() -> None:
    gate = asyncio.Event()

    async def handler(key: str, items: Sequence[int]) -> list[int]:
        if items == [1]:
            await gate.wait()
        else:
            await asyncio.sleep(0.02)  # a batch costs about the same whatever its size
        return list(items)

    writer: Coalescer[str, int, int] = Coalescer(handler, max_batch=256)
    first = asyncio.create_task(writer.submit("k", 0))  # a batch of one: ~20 ms
    await asyncio.sleep(0)
    held = asyncio.create_task(writer.submit("k", 1))  # the next batch of one, held
    assert await first == 0
    queued = [asyncio.create_task(writer.submit("k", i)) for i in range(2, 52)]
    await asyncio.sleep(0)
    # 50 ahead, but all in the next batch: about one batch of wait, well within 0.5 s
    # (counted per request at the small batches' pace it would look like a whole second).
    probe = asyncio.create_task(writer.submit("k", 99, time_remaining=0.5))
    await asyncio.sleep(0)
    gate.set()
    assert await probe == 99
    assert await held == 1
    assert [await q for q in queued] == list(range(2, 52))


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
    with pytest.raises(ResourceExhausted) as refused:  # three items ahead at ~50 ms each
        await writer.submit("k", 9, time_remaining=0.01)
    assert retry_delay(refused.value) > 0
    release.set()
    assert await slow == 1
    assert [await q for q in queued] == [2, 3]


# ------------------------------------------------------------------ across keys


async def test_across_keys_many_keys_share_a_batch_each_in_arrival_order() -> None:
    transactions: list[list[tuple[str, list[int]]]] = []

    async def handler(batches: Sequence[tuple[str, Sequence[int]]]) -> list[list[int]]:
        transactions.append([(key, list(items)) for key, items in batches])
        await asyncio.sleep(0.01)
        return [[i * 10 for i in items] for _, items in batches]

    writer: Coalescer[str, int, int] = Coalescer.across_keys(
        handler, max_keys=8, writers=1, max_batch=3
    )
    keys = [f"k{n}" for n in range(20)]
    calls = [(key, i) for i in range(5) for key in keys]  # interleaved arrivals
    results = await asyncio.gather(*(writer.submit(key, i) for key, i in calls))
    assert results == [i * 10 for _, i in calls]
    assert len(transactions) < len(calls) / 3  # keys shared transactions
    assert any(len(batches) > 1 for batches in transactions)
    for batches in transactions:
        assert len(batches) <= 8
        assert len({key for key, _ in batches}) == len(batches)  # a key once per batch
        assert all(len(items) <= 3 for _, items in batches)
    for key in keys:  # each key's requests in arrival order
        seen = [i for batches in transactions for k, items in batches if k == key for i in items]
        assert seen == list(range(5))


async def test_across_keys_runs_at_most_its_writers_and_a_key_in_one_batch() -> None:
    running = 0
    most = 0
    in_flight: set[str] = set()
    overlapped: list[str] = []

    async def handler(batches: Sequence[tuple[str, Sequence[int]]]) -> list[list[int]]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        keys = {key for key, _ in batches}
        overlapped.extend(keys & in_flight)
        in_flight.update(keys)
        await asyncio.sleep(0.005)
        in_flight.difference_update(keys)
        running -= 1
        return [list(items) for _, items in batches]

    writer: Coalescer[str, int, int] = Coalescer.across_keys(
        handler, max_keys=2, writers=3, max_batch=1
    )
    calls = [(f"k{n % 7}", n) for n in range(70)]
    assert await asyncio.gather(*(writer.submit(k, i) for k, i in calls)) == [i for _, i in calls]
    assert most == 3  # enough work for every writer, never more
    assert overlapped == []


async def test_across_keys_a_failed_transaction_fails_its_keys_only() -> None:
    async def handler(batches: Sequence[tuple[str, Sequence[int]]]) -> list[list[int]]:
        if any(key == "bad" for key, _ in batches):
            raise RuntimeError("the transaction failed")
        return [list(items) for _, items in batches]

    writer: Coalescer[str, int, int] = Coalescer.across_keys(handler, max_keys=1, writers=2)
    bad = asyncio.create_task(writer.submit("bad", 1))
    good = asyncio.create_task(writer.submit("good", 2))
    with pytest.raises(RuntimeError):
        await bad
    assert await good == 2
    assert writer.depth() == (0, 0)  # no key left behind
