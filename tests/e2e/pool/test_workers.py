"""`POOL_WORKERS=2`: two pool processes on one port (SO_REUSEPORT) under a supervisor.

Callers on separate connections reach both workers and the last-unit race across them
still hands no unit out twice; a worker that dies takes the pod down with a line saying
which one and how; SIGTERM stops every worker and the supervisor exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import pytest

from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.processes import ServiceProcess, spawn, spawned
from tests.support.races import assert_100_units_handed_out_once

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

WORKERS = 2
# Each channel its own TCP connection: the kernel spreads connections, not calls, so 16
# connections reach both workers (all on one: a chance of 2 in 65,536).
CONNECTIONS = 16


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "POOL_DATABASE_URL": database_url,
        "POOL_PORT": "0",
        "POOL_LOG_LEVEL": "WARNING",
        "POOL_WORKERS": str(WORKERS),
        **extra,
    }


def workers_of(service: ServiceProcess) -> list[int]:
    pid = service.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def all_listening(service: ServiceProcess) -> list[int]:
    """The workers' pids once both have said they listen (the supervisor's stdout carries
    every worker's line; the first was read by `spawn`)."""
    assert service.process.stdout is not None
    line = await asyncio.wait_for(service.process.stdout.readline(), 30)
    assert b" listening on " + service.address.encode() in line, line
    pids = workers_of(service)
    assert len(pids) == WORKERS
    return pids


async def test_two_workers_share_the_port_and_never_hand_out_a_unit_twice(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    traces = tmp_path / "spans.jsonl"
    async with AsyncExitStack() as stack:
        service = await stack.enter_async_context(
            spawned("pool", worker_env(database_url, POOL_TRACES=str(traces)))
        )
        await all_listening(service)
        channels = [
            tls.channel(service.address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(CONNECTIONS)
        ]
        for channel in channels:
            stack.push_async_callback(channel.close)
        await assert_100_units_handed_out_once(
            [pool_pb2_grpc.PoolServiceStub(c) for c in channels], db
        )
    # Stopped: every span is written. Each worker is its own instance.
    spans = [json.loads(line) for line in traces.read_text().splitlines() if line]
    served = Counter(
        s["instance"] for s in spans if s["name"] == "/licensing.pool.v1.PoolService/Acquire"
    )
    assert sum(served.values()) == 500
    assert len(served) == WORKERS, served


async def test_a_worker_that_dies_stops_the_others_and_says_which(
    database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "pool.log"
    service = await spawn("pool", worker_env(database_url), log=log)
    try:
        first, second = await all_listening(service)
        os.kill(second, signal.SIGKILL)
        code = await asyncio.wait_for(service.process.wait(), 30)
    finally:
        service.kill()
    assert code == 128 + signal.SIGKILL
    assert "pool: worker 1 exited with code -9" in log.read_text()
    assert not alive(first)


async def test_sigterm_stops_every_worker(database_url: str) -> None:
    service = await spawn("pool", worker_env(database_url))
    try:
        pids = await all_listening(service)
    finally:
        code = await service.stop()
    assert code == 0
    assert not any(alive(pid) for pid in pids)
