"""`python -m services` (what `make run` does): the whole platform on one machine.

Uses `DATABASE_URL` when set; otherwise starts an embedded PostgreSQL (pgserver) whose
data lives in `LICENSING_DATA_DIR` (default `.local/pgdata`). Applies every service's
migrations, starts each service as its own process on its default port (`<SVC>_PORT`
overrides it; on the embedded database as its own role, `licensing_<service>`, which
can use only its own schema), prints the addresses (and, when they are not the defaults,
the `export` line that lets the `licensing` command find them) and then the services' own
output, and stops them
all on Ctrl-C or SIGTERM (killing what has not stopped after `LICENSING_STOP_SECONDS`).
When one service exits, it says which and how, and stops the others.

`LICENSING_REPLICAS=N` starts N processes of each service (replica k on its port + 10 k,
or on the ports `<SVC>_PORTS` lists); peers, and the `licensing` command through the
printed `export` line, are given the list of a service's addresses (`ipv4:h:p1,h:p2`),
over which the peer client balances its calls (round_robin).

Mutual TLS is on by default: on first start a local CA, a certificate for each service
(`spiffe://licensing/<service>`), the operator identity of the `licensing` command line
and a token-signing key are created in `LICENSING_PKI_DIR` (default `.local/pki`), and
each service is pointed at its files unless its `<SVC>_TLS_*` settings are already set.
`LICENSING_TLS_ENABLED=false` runs everything in plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from libs.common import embedded_db, local_pki, migrations

# Service name -> default port. Peers find each other through <NAME>_ADDRESS.
SERVICES: dict[str, int] = {
    "pool": 50051,
    "billing": 50052,
    "credits": 50053,
    "provisioning": 50054,
}
ROOT = Path(__file__).resolve().parent.parent
# Replica k of a service listens on its port + REPLICA_PORT_STEP * k (LICENSING_REPLICAS).
REPLICA_PORT_STEP = 10


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


def export_line(host: str, ports: dict[str, int]) -> str | None:
    """The line to paste into another shell so the `licensing` command (and any tool that
    reads `<SVC>_ADDRESS`) finds this platform; None when it runs on the defaults."""
    if host == "127.0.0.1" and all(port == SERVICES[name] for name, port in ports.items()):
        return None
    return exports({name: f"{host}:{port}" for name, port in ports.items()})


def exports(addresses: dict[str, str]) -> str:
    return "export " + " ".join(f"{name.upper()}_ADDRESS={a}" for name, a in addresses.items())


def replica_ports(name: str, port: int, replicas: int) -> list[int]:
    """The ports of a service's replicas: `<SVC>_PORTS` (comma-separated), else `port`,
    `port` + 10, ..."""
    given = os.environ.get(f"{name.upper()}_PORTS", "").strip()
    if not given:
        return [port + REPLICA_PORT_STEP * k for k in range(replicas)]
    ports = [int(p) for p in given.split(",")]
    if len(ports) != replicas:
        raise SystemExit(f"{name.upper()}_PORTS lists {len(ports)} ports for {replicas} replicas")
    return ports


def service_address(host: str, ports: list[int]) -> str:
    """How peers reach a service: `host:port`, or for several replicas the list of their
    addresses (`ipv4:h:p1,h:p2`), which the peer client balances its calls over."""
    if len(ports) == 1:
        return f"{host}:{ports[0]}"
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        raise SystemExit(
            "LICENSING_REPLICAS > 1 needs LICENSING_HOST to be an IP address"
        ) from None
    if version == 4:
        return "ipv4:" + ",".join(f"{host}:{p}" for p in ports)
    return "ipv6:" + ",".join(f"[{host}]:{p}" for p in ports)


def as_role(url: str, role: str) -> str:
    """The embedded database's URL (postgresql://postgres@/...) for another role."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def tls_enabled() -> bool:
    value = os.environ.get("LICENSING_TLS_ENABLED", "true").strip().lower()
    return value not in ("0", "false", "no", "off")


def security_environment(names: list[str]) -> dict[str, str]:
    """Each service's TLS and token settings, from the local PKI (created on first
    start); settings already in the environment are kept."""
    if not tls_enabled():
        print("LICENSING_TLS_ENABLED=false: services run in plaintext", flush=True)
        return {f"{n.upper()}_TLS_ENABLED": "false" for n in names}
    directory = Path(os.environ.get("LICENSING_PKI_DIR") or ROOT / ".local" / "pki")
    pki = local_pki.ensure(directory, names)
    env = {"LICENSING_PKI_DIR": str(directory)}
    for name in names:
        files = pki.credentials(name)
        prefix = name.upper()
        for key, value in (
            ("TLS_ENABLED", "true"),
            ("TLS_CERT_FILE", str(files.cert)),
            ("TLS_KEY_FILE", str(files.key)),
            ("TLS_CA_FILE", str(files.ca)),
            ("JWKS_FILE", str(pki.jwks)),
        ):
            env[f"{prefix}_{key}"] = os.environ.get(f"{prefix}_{key}") or value
    print(f"mutual TLS on: certificates in {directory}", flush=True)
    return env


def exit_description(code: int) -> str:
    """How a child ended, in words: its exit code or the signal that killed it."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def forward_output(name: str, process: asyncio.subprocess.Process) -> None:
    """Copies a child's stdout to ours until it closes, so a chatty child (console
    traces) never blocks on a full pipe."""
    assert process.stdout is not None
    while line := await process.stdout.readline():
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


async def wait_until_listening(process: asyncio.subprocess.Process) -> str | None:
    """The child's "<name> listening on <address>" line, or None if it exited first."""
    assert process.stdout is not None
    while line := await process.stdout.readline():
        text = line.decode(errors="replace").strip()
        if " listening on " in text:
            return text
        print(text, flush=True)
    return None


async def stop_all(processes: dict[str, asyncio.subprocess.Process], grace: float) -> None:
    """SIGTERM to every child still running; SIGKILL to those still there after the grace."""
    for process in processes.values():
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    waits = [asyncio.create_task(p.wait()) for p in processes.values()]
    _, pending = await asyncio.wait(waits, timeout=grace)
    if pending:
        for name, process in processes.items():
            if process.returncode is None:
                print(f"{name} did not stop within {grace:.0f} s: killing it", flush=True)
                process.kill()
        await asyncio.wait(pending)


async def run() -> int:
    url = database_url()
    names = available()
    for name in names:
        await asyncio.to_thread(importlib.import_module(f"services.{name}.app").migrate, url)
    host = os.environ.get("LICENSING_HOST", "127.0.0.1")
    ports = {n: int(os.environ.get(f"{n.upper()}_PORT", SERVICES[n])) for n in names}
    replicas = int(os.environ.get("LICENSING_REPLICAS", "1"))
    if replicas < 1:
        raise SystemExit("LICENSING_REPLICAS must be at least 1")
    all_ports = {n: replica_ports(n, ports[n], replicas) for n in names}
    env = {**os.environ, "DATABASE_URL": url, **security_environment(names)}
    if not os.environ.get("DATABASE_URL"):
        # The embedded database: each service connects as its own role (created by its
        # migrations), which can use its own schema only.
        for name in names:
            env[f"{name.upper()}_DATABASE_URL"] = as_role(url, migrations.role_of(name))
    addresses = {n: service_address(host, all_ports[n]) for n in names}
    for name in names:
        env[f"{name.upper()}_ADDRESS"] = addresses[name]
        env[f"{name.upper()}_HOST"] = host
    # Each process: its service and the port it listens on.
    instances = {
        (name if k == 0 else f"{name}-{k + 1}"): (name, port)
        for name in names
        for k, port in enumerate(all_ports[name])
    }
    grace = float(os.environ.get("LICENSING_STOP_SECONDS", "15"))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    processes: dict[str, asyncio.subprocess.Process] = {}
    # A child's output is read until it ends, also while stopping: a child blocked on a
    # full pipe cannot exit, and asyncio sees it exit only once its pipe is drained.
    forwarders: dict[str, asyncio.Task[None]] = {}

    def forward(name: str) -> None:
        if name not in forwarders:
            forwarders[name] = asyncio.create_task(forward_output(name, processes[name]))

    try:
        for instance, (name, port) in instances.items():
            processes[instance] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{name}",
                "serve",
                env={**env, f"{name.upper()}_PORT": str(port)},
                stdout=asyncio.subprocess.PIPE,
            )
        for name, process in processes.items():
            started = asyncio.create_task(wait_until_listening(process))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([started, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                started.cancel()
                await asyncio.gather(started, return_exceptions=True)
                return 0
            line = started.result()
            if line is None:
                code = await process.wait()
                print(f"{name} failed to start: it {exit_description(code)}", file=sys.stderr)
                return 1
            print(line, flush=True)
            forward(name)
        mode = "mutual TLS" if tls_enabled() else "plaintext"
        print(
            f"Ready. Services answer gRPC ({mode}) with reflection; Ctrl-C stops everything.",
            flush=True,
        )
        hint = export_line(host, ports) if replicas == 1 else exports(addresses)
        if hint:
            print("Not the default addresses: for `licensing` in another shell, run", flush=True)
            print(f"  {hint}", flush=True)

        exits = {asyncio.create_task(p.wait()): n for n, p in processes.items()}
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *exits], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        failed = [exits[t] for t in done if t in exits]
        for name in failed:
            ended = processes[name].returncode
            assert ended is not None
            print(f"{name} {exit_description(ended)}: stopping the others", file=sys.stderr)
        return 1 if failed and not stop.is_set() else 0
    finally:
        for name in processes:
            forward(name)
        await stop_all(processes, grace)
        await asyncio.gather(*forwarders.values(), return_exceptions=True)


def main() -> None:
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
