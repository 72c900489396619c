"""A database baseline without pgbench: the same transaction from asyncpg clients.

Run as `python -m bench.baselines.sql_client URL --clients 64 --duration 5 --statement SQL
[--statement SQL ...]`; prints one JSON line: transactions, failed, tps. One statement
runs on its own (its own implicit transaction); several run inside one transaction. Each
is a prepared statement, as pgbench's `--protocol=prepared` runs them. Used only when
pgbench is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

import asyncpg


async def _transaction(connection: asyncpg.Connection, statements: Sequence[str]) -> None:
    if len(statements) == 1:
        await connection.fetch(statements[0])
        return
    async with connection.transaction():
        for statement in statements:
            await connection.fetch(statement)


async def _client(url: str, statements: Sequence[str], stop_at: float, counts: list[int]) -> None:
    connection = await asyncpg.connect(url)
    try:
        while time.monotonic() < stop_at:
            try:
                await _transaction(connection, statements)
                counts[0] += 1
            except asyncpg.PostgresError:
                counts[1] += 1
    finally:
        await connection.close()


async def run(
    url: str, statements: Sequence[str], clients: int, duration_s: float
) -> dict[str, float]:
    counts = [0, 0]  # transactions, failed
    started = time.monotonic()
    stop_at = started + duration_s
    await asyncio.gather(*(_client(url, statements, stop_at, counts) for _ in range(clients)))
    elapsed = time.monotonic() - started
    return {"transactions": counts[0], "failed": counts[1], "tps": counts[0] / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--statement", action="append", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.statement, args.clients, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
