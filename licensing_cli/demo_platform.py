"""The platform the demo plays on: the launcher (`python -m services`, four services, each
its own process) started on free ports, on its own embedded PostgreSQL in a given
directory (or on a given database), and stopped when the block ends, however it ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVICE_NAMES = ("pool", "billing", "credits", "provisioning")
_SECURITY_SETTINGS = (
    "_TLS_ENABLED",
    "_TLS_CERT_FILE",
    "_TLS_KEY_FILE",
    "_TLS_CA_FILE",
    "_JWKS_FILE",
)
STARTUP_SECONDS = 180.0
STOP_SECONDS = 40.0


class PlatformFailed(Exception):
    """The platform exited, or was not ready in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Platform:
    """The four services the launcher started."""

    addresses: dict[str, str]
    log: Path
    pki: Path

    @property
    def cli_env(self) -> dict[str, str]:
        """The variables the `licensing` command finds the services and its operator
        certificate by."""
        env = {f"LICENSING_{n.upper()}": a for n, a in self.addresses.items()}
        env["LICENSING_PKI_DIR"] = str(self.pki)
        return env


@contextmanager
def launched(
    workdir: Path,
    grace_seconds: float,
    database_url: str | None = None,
    replicas: int = 1,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Platform]:
    """`python -m services` on free ports, `replicas` processes of each service; on
    `database_url`, else on an embedded database in `workdir`; with `extra_env` added to
    its environment. Stops everything when the block ends, however it ends."""
    ports = {name: [free_port() for _ in range(replicas)] for name in SERVICE_NAMES}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("DATABASE_URL")
        and not k.startswith("LICENSING_")
        and not any(k.endswith(s) for s in _SECURITY_SETTINGS)
    }
    # The launcher creates the demo's own CA and certificates (mutual TLS, as `make run`).
    env["LICENSING_PKI_DIR"] = str(workdir / "pki")
    env["POOL_GRACE_SECONDS"] = f"{grace_seconds:g}"
    env["LICENSING_DATA_DIR"] = str(workdir / "pgdata")
    if database_url:
        env["DATABASE_URL"] = database_url
    env["LICENSING_REPLICAS"] = str(replicas)
    for name, own in ports.items():
        env[f"{name.upper()}_PORT"] = str(own[0])
        env[f"{name.upper()}_PORTS"] = ",".join(map(str, own))
        env[f"{name.upper()}_LOG_LEVEL"] = "WARNING"
    env.update(extra_env or {})
    log = workdir / "platform.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "services"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the platform
        )
    try:
        _wait_ready(process, log)
        yield Platform({n: _address(p) for n, p in ports.items()}, log, workdir / "pki")
    finally:
        _stop(process)


def _address(ports: list[int]) -> str:
    """A service's address for the command line: one replica's, or the list of all
    (which the client package balances calls over)."""
    if len(ports) == 1:
        return f"127.0.0.1:{ports[0]}"
    return "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)


def _wait_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if "Ready." in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise PlatformFailed(
                f"the platform exited with code {process.returncode}:\n{tail(log)}"
            )
        time.sleep(0.2)
    raise PlatformFailed(f"the platform was not ready after {STARTUP_SECONDS:g} s:\n{tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only what it started
            process.wait()


def tail(log: Path, lines: int = 30) -> str:
    """The end of the platform's log, for failure messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
