"""The pool service under test: `python -m services.pool serve` on a scratch database.

Each pool scenario gets its own scratch database, migrated with
`python -m services.pool migrate`, and its own service process on a free port
(bench/harness/services.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TypedDict

from bench.harness.context import BenchContext
from bench.harness.correctness import IssueLedger
from bench.harness.database import scratch_database
from bench.harness.services import module_unavailable, service_process
from libs.common import local_pgbouncer
from libs.common.tls import TlsFiles

MODULE = "services.pool"
WITHOUT_HISTORY = "bench.baselines.pool_without_history"


def unavailable_reason() -> str | None:
    """Why the pool service cannot be started here, or None if it can."""
    return module_unavailable(MODULE)


@dataclass
class PoolTarget:
    """A running pool service, its database, and what was allocated from it."""

    address: str
    database_url: str
    pid: int
    ledger: IssueLedger = field(default_factory=IssueLedger)
    tls: TlsFiles | None = None  # mutual TLS: the client files (None: plaintext)
    workers: int = 1  # server processes on the port (POOL_WORKERS)


class ServiceOptions(TypedDict, total=False):
    """How a scenario's pool service runs (pool_service's keyword arguments)."""

    tls: bool
    pgbouncer: bool
    history: bool
    workers: int


@contextmanager
def pool_service(
    ctx: BenchContext,
    name: str,
    tls: bool = False,
    pgbouncer: bool = False,
    history: bool = True,
    workers: int = 1,
) -> Iterator[PoolTarget]:
    """A pool service on a fresh database (with mutual TLS when `tls`; through a
    PgBouncer in transaction pooling mode, the statement cache off, when `pgbouncer`;
    writing no unit history when not `history`: bench/baselines/pool_without_history.py;
    as `workers` processes on one port: libs/common/workers.py); stopped and the database
    dropped afterwards."""
    with ExitStack() as stack:
        database_url = stack.enter_context(scratch_database(ctx.admin_url, f"pool_{name}"))
        serve_url = None
        extra: dict[str, str] = {"POOL_WORKERS": str(workers)}
        if pgbouncer:
            bouncer = stack.enter_context(local_pgbouncer.running(ctx.admin_url))
            serve_url = bouncer.url(database_url)
            extra["POOL_DATABASE_STATEMENT_CACHE_SIZE"] = "0"
        service = stack.enter_context(
            service_process(
                ctx,
                MODULE,
                "POOL",
                database_url,
                f"pool-{name}",
                extra,
                tls,
                serve_url,
                None if history else WITHOUT_HISTORY,
            )
        )
        yield PoolTarget(
            service.address, service.database_url, service.pid, tls=service.tls, workers=workers
        )
