"""The allocation baseline without pgbench: the same transaction from asyncpg clients.

Run as `python -m bench.naive_client URL --clients 64 --duration 5 --batch 1`; prints
one JSON line: transactions, failed, tps. Used only when pgbench is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import asyncpg

from bench.naive_sql import lock_pool_sql, take_units_sql


async def _client(url: str, batch: int, stop_at: float, counts: list[int]) -> None:
    connection = await asyncpg.connect(url)
    lock, take = lock_pool_sql(), take_units_sql(batch)
    try:
        while time.monotonic() < stop_at:
            try:
                async with connection.transaction():
                    await connection.fetchval(lock)
                    await connection.fetch(take)
                counts[0] += 1
            except asyncpg.PostgresError:
                counts[1] += 1
    finally:
        await connection.close()


async def run(url: str, clients: int, duration_s: float, batch: int) -> dict[str, float]:
    counts = [0, 0]  # transactions, failed
    started = time.monotonic()
    stop_at = started + duration_s
    await asyncio.gather(*(_client(url, batch, stop_at, counts) for _ in range(clients)))
    elapsed = time.monotonic() - started
    return {"transactions": counts[0], "failed": counts[1], "tps": counts[0] / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.clients, args.duration, args.batch))))


if __name__ == "__main__":
    main()
