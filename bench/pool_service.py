"""The pool service under test: started as `python -m services.pool serve`.

Each pool scenario gets its own scratch database, migrated with
`python -m services.pool migrate`, and its own service process on a free port.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench.context import BenchContext
from bench.correctness import AllocationLedger
from bench.database import scratch_database
from bench.processes import REPO_ROOT, free_port, grpc_server, python_module

MODULE = "services.pool"


def unavailable_reason() -> str | None:
    """Why the pool service cannot be started here, or None if it can."""
    try:
        spec = importlib.util.find_spec(f"{MODULE}.__main__")
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return f"{MODULE} has no __main__ yet (`python -m {MODULE} serve`)"
    return None


@dataclass
class PoolTarget:
    """A running pool service, its database, and what was allocated from it."""

    address: str
    database_url: str
    pid: int
    ledger: AllocationLedger = field(default_factory=lambda: AllocationLedger([]))


def _environment(database_url: str, port: int) -> dict[str, str]:
    return {
        "POOL_DATABASE_URL": database_url,
        "POOL_PORT": str(port),
        "POOL_HOST": "127.0.0.1",
        "POOL_LOG_LEVEL": "WARNING",
        "POOL_TRACES": "none",
    }


def _migrate(ctx: BenchContext, env: dict[str, str], name: str) -> None:
    log = ctx.path(f"pool-{name}-migrate.log")
    with log.open("wb") as sink:
        completed = subprocess.run(
            python_module(MODULE, "migrate"),
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if completed.returncode != 0:
        raise RuntimeError(
            f"`python -m {MODULE} migrate` failed ({completed.returncode}); see {log}"
        )


@contextmanager
def pool_service(ctx: BenchContext, name: str) -> Iterator[PoolTarget]:
    """A pool service on a fresh database; stopped and the database dropped afterwards."""
    with scratch_database(ctx.admin_url, f"pool_{name}") as database_url:
        port = free_port()
        env = _environment(database_url, port)
        _migrate(ctx, env, name)
        argv = python_module(MODULE, "serve")
        with grpc_server(argv, port, ctx.path(f"pool-{name}.log"), env) as server:
            yield PoolTarget(server.address, database_url, server.pid)
