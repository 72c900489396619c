"""A consumer of the pool's event stream, killed at random points while two pool
replicas serve concurrent changes, resumes from its last saved cursor each time: in
the end it has every event once (after deduplicating by event id), in commit order,
and the events tell every change the callers were answered for."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.pool import Company, new_company, rid
from tests.support.processes import spawned

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

LOAD_SECONDS = 10.0
WORKERS = 12
# (office, currency): two currencies take two locks, so their transactions overlap.
OFFICES = (("usd-1", "USD"), ("usd-2", "USD"), ("eur-1", "EUR"), ("eur-2", "EUR"))


class Load:
    """What the callers were told: the receipts of their acquisitions, their returns."""

    def __init__(self) -> None:
        self.receipts: set[str] = set()
        self.returns = 0
        self.additions = 0
        self.failures: list[grpc.StatusCode] = []


async def work(stubs: list[pool_pb2_grpc.PoolServiceStub], company: Company, load: Load) -> None:
    """Acquire a unit and give it back, now and then add one, until the time is up."""
    rng = random.Random()
    end = time.monotonic() + LOAD_SECONDS
    while time.monotonic() < end:
        stub = rng.choice(stubs)
        office = rng.choice(OFFICES)[0]
        try:
            if rng.random() < 0.1:
                await stub.AddUnits(
                    pb.AddUnitsRequest(
                        request_id=rid(),
                        company_id=company.company_id,
                        office_id=company.offices[office],
                        license_type="connect",
                        quantity=1,
                    ),
                    timeout=10,
                )
                load.additions += 1
                continue
            acquired = await stub.Acquire(
                pb.AcquireRequest(
                    request_id=rid(),
                    company_id=company.company_id,
                    office_id=company.offices[office],
                    license_type="connect",
                    quantity=1,
                ),
                timeout=10,
            )
            load.receipts.add(acquired.receipt.receipt_id)
            await stub.ReturnUnits(
                pb.ReturnUnitsRequest(
                    request_id=rid(),
                    company_id=company.company_id,
                    unit_ids=[u.unit_id for u in acquired.units],
                ),
                timeout=10,
            )
            load.returns += 1
        except grpc.aio.AioRpcError as error:
            # Refusals (no unit left, overload) have no effect and publish nothing.
            load.failures.append(error.code())


async def start_consumer(
    address: str, company_id: str, directory: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.event_consumer", address, company_id, str(directory)
    )


async def kill_consumers(
    addresses: list[str], company_id: str, directory: Path, stop: asyncio.Event
) -> int:
    """Starts the consumer and SIGKILLs it after a random while, over and over, against
    either replica; returns how many times it was killed."""
    rng = random.Random()
    kills = 0
    while not stop.is_set():
        consumer = await start_consumer(rng.choice(addresses), company_id, directory)
        await asyncio.sleep(rng.uniform(1.0, 3.0))  # it starts in about a second
        consumer.kill()
        await consumer.wait()
        kills += 1
    return kills


def seen_ids(directory: Path) -> list[str]:
    seen = directory / "seen"
    # A kill mid-write may leave a partial last line: it was not processed.
    return [line for line in seen.read_text().split("\n")[:-1]] if seen.exists() else []


async def test_a_consumer_killed_at_random_points_misses_nothing_and_dedups_to_each_once(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    env = {"POOL_DATABASE_URL": database_url, "POOL_PORT": "0", "POOL_LOG_LEVEL": "WARNING"}
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(spawned("pool", env)) for _ in range(2)]
        addresses = [r.address for r in replicas]
        channels = [tls.channel(a) for a in addresses]
        for channel in channels:
            stack.push_async_callback(channel.close)
        stubs = [pool_pb2_grpc.PoolServiceStub(c) for c in channels]
        company = new_company(stubs[0])
        for office, currency in OFFICES:
            await company.office(office, currency)
            await company.add(office, "connect", 40)

        load, stop = Load(), asyncio.Event()
        killing = asyncio.create_task(kill_consumers(addresses, company.company_id, tmp_path, stop))
        await asyncio.gather(*(work(stubs, company, load) for _ in range(WORKERS)))
        stop.set()
        kills = await killing

        rows = await db.fetch(
            "SELECT event_id::text, seq, event_type, data->>'receipt_id' AS receipt_id "
            "FROM pool.events WHERE company_id = $1 ORDER BY seq",
            company.company_id,
        )
        # The last run is left to catch up with everything.
        last = await start_consumer(addresses[0], company.company_id, tmp_path)
        deadline = time.monotonic() + 90
        while set(seen_ids(tmp_path)) < {r["event_id"] for r in rows}:
            assert time.monotonic() < deadline, "the consumer did not catch up"
            await asyncio.sleep(0.2)
        last.kill()
        await last.wait()

    seen = seen_ids(tmp_path)
    first_seen = list(dict.fromkeys(seen))
    assert kills >= 3
    assert len(seen) > len(first_seen)  # kills landed mid-message: events came again
    assert first_seen == [r["event_id"] for r in rows]  # every event, once, in commit order
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    acquired = {r["receipt_id"] for r in rows if r["event_type"] == "pool.units.acquired"}
    assert acquired == load.receipts
    types = [r["event_type"] for r in rows]
    assert types.count("pool.units.returned") == load.returns
    assert types.count("pool.units.added") == len(OFFICES) + load.additions
    assert load.returns > 100  # there was load while the consumer was killed
    assert not {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN} & set(load.failures)
    print(f"{len(rows)} events, {kills} kills, {len(seen) - len(first_seen)} redelivered")
