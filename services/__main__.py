"""`python -m services` (what `make run` does): the whole platform on one machine.

Uses `DATABASE_URL` when set; otherwise starts an embedded PostgreSQL (pgserver) whose
data lives in `LICENSING_DATA_DIR` (default `.local/pgdata`). Applies every service's
migrations, starts each service as its own process on its default port (`<SVC>_PORT`
overrides it), prints the addresses, and stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
from pathlib import Path

from libs.common import embedded_db

# Service name -> default port. Peers find each other through <NAME>_ADDRESS.
SERVICES: dict[str, int] = {
    "pool": 50051,
    "billing": 50052,
    "credits": 50053,
    "provisioning": 50054,
}
ROOT = Path(__file__).resolve().parent.parent


def available() -> list[str]:
    """The services this checkout has."""
    return [name for name in SERVICES if (ROOT / "services" / name / "app.py").exists()]


def database_url() -> str:
    given = os.environ.get("DATABASE_URL")
    if given:
        return given
    data_dir = Path(os.environ.get("LICENSING_DATA_DIR") or ROOT / ".local" / "pgdata")
    print(f"DATABASE_URL is not set: starting the embedded PostgreSQL in {data_dir}", flush=True)
    return embedded_db.start(data_dir, cleanup=False)


async def run() -> int:
    url = database_url()
    names = available()
    for name in names:
        await asyncio.to_thread(importlib.import_module(f"services.{name}.app").migrate, url)
    host = os.environ.get("LICENSING_HOST", "127.0.0.1")
    ports = {n: int(os.environ.get(f"{n.upper()}_PORT", SERVICES[n])) for n in names}
    env = {**os.environ, "DATABASE_URL": url}
    for name in names:
        env[f"{name.upper()}_ADDRESS"] = f"{host}:{ports[name]}"
        env[f"{name.upper()}_PORT"] = str(ports[name])
        env[f"{name.upper()}_HOST"] = host
    processes = {
        name: await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{name}",
            "serve",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        for name in names
    }
    for name, process in processes.items():
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            print(f"{name} failed to start", file=sys.stderr)
            return 1
        print(line.decode().strip(), flush=True)
    print("Ready. Services answer gRPC with reflection; Ctrl-C stops everything.", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exited = [asyncio.create_task(p.wait()) for p in processes.values()]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, *exited], return_when=asyncio.FIRST_COMPLETED)
    for process in processes.values():
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    codes = [await p.wait() for p in processes.values()]
    return 0 if stop.is_set() else max(codes, default=0) or 1


def main() -> None:
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
