"""Any service of the platform under test: `python -m services.<name> migrate`, then `serve`.

Every service has the same command line (libs/common/entrypoint.py) and reads its
settings from environment variables with its own prefix (`CREDITS_DATABASE_URL`,
`CREDITS_PORT`, ...). `service_process` migrates a database and starts the service on a
free port, waits for gRPC health `SERVING`, and stops it (SIGTERM) afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from bench.harness import tls as bench_tls
from bench.harness.context import BenchContext
from bench.harness.processes import REPO_ROOT, free_port, grpc_server, python_module
from libs.common.tls import TlsFiles


def module_unavailable(module: str) -> str | None:
    """Why `python -m <module> serve` cannot run here, or None if it can."""
    try:
        spec = importlib.util.find_spec(f"{module}.__main__")
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return f"{module} has no __main__ yet (`python -m {module} serve`)"
    return None


@dataclass(frozen=True)
class ServiceTarget:
    """A running service and the database it uses."""

    name: str
    address: str
    database_url: str
    pid: int
    tls: TlsFiles | None = None  # the client files it is reached with (None: plaintext)


def service_environment(
    prefix: str, database_url: str, port: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a service whose settings are prefixed `prefix` (e.g. CREDITS)."""
    return {
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_PORT": str(port),
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_LOG_LEVEL": "WARNING",
        f"{prefix}_TRACES": "none",
        # Plaintext unless the scenario asks for mutual TLS (`extra` with the TLS files):
        # the scenarios' clients and baselines talk plaintext.
        f"{prefix}_TLS_ENABLED": "false",
        **(extra or {}),
    }


def migrate(ctx: BenchContext, module: str, env: Mapping[str, str], label: str) -> None:
    """Runs `python -m <module> migrate`; raises with the log's path when it fails."""
    log = ctx.path(f"{label}-migrate.log")
    with log.open("wb") as sink:
        completed = subprocess.run(
            python_module(module, "migrate"),
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if completed.returncode != 0:
        raise RuntimeError(
            f"`python -m {module} migrate` failed ({completed.returncode}); see {log}"
        )


@contextmanager
def service_process(
    ctx: BenchContext,
    module: str,
    prefix: str,
    database_url: str,
    label: str,
    extra_env: Mapping[str, str] | None = None,
    tls: bool = False,
    serve_url: str | None = None,
    serve_module: str | None = None,
) -> Iterator[ServiceTarget]:
    """Migrates `database_url` and serves `module` on it until the block ends; with
    `tls`, mutual TLS with a certificate of the run's CA (bench/harness/tls.py). The
    service may reach the database another way (`serve_url`, e.g. through PgBouncer);
    migrations and checks use `database_url` itself. `serve_module` serves instead of
    `module` (the same service, changed for a measurement) after `module`'s migrations."""
    port = free_port()
    files = None
    extra = dict(extra_env or {})
    if tls:
        name = module.rsplit(".", 1)[-1]
        tls_env, files = bench_tls.service_environment(ctx.path("pki"), name, prefix)
        extra.update(tls_env)
        bench_tls.register(f"127.0.0.1:{port}", files)
    env = service_environment(prefix, database_url, port, extra)
    migrate(ctx, module, env, label)
    serve_env = {**env, f"{prefix}_DATABASE_URL": serve_url or database_url}
    try:
        with grpc_server(
            python_module(serve_module or module, "serve"),
            port,
            ctx.path(f"{label}.log"),
            serve_env,
        ) as server:
            yield ServiceTarget(label, server.address, database_url, server.pid, files)
    finally:
        bench_tls.unregister(f"127.0.0.1:{port}")
