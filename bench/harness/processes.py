"""Servers the benchmark starts as subprocesses: start, wait until serving, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import tls as bench_tls

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RunningServer:
    """A started server subprocess."""

    process: subprocess.Popen[bytes]
    address: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def log_tail(log: Path, lines: int = 20) -> str:
    """The end of a log file, for error messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until_serving(server: RunningServer, timeout_s: float) -> None:
    """Polls the gRPC health service until it answers SERVING."""
    deadline = time.monotonic() + timeout_s
    with bench_tls.channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {server.process.returncode} before serving; "
                    f"log {server.log}:\n{log_tail(server.log)}"
                )
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{server.address} not serving after {timeout_s:g}s; "
                    f"log {server.log}:\n{log_tail(server.log)}"
                )
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; only ever the process we started."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def grpc_server(
    argv: Sequence[str],
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = 60.0,
) -> Iterator[RunningServer]:
    """Starts a gRPC server subprocess listening on `port`, yields it once SERVING."""
    full_env = {**os.environ, **(env or {})}
    with log.open("ab") as sink:
        process = subprocess.Popen(
            list(argv), cwd=REPO_ROOT, env=full_env, stdout=sink, stderr=subprocess.STDOUT
        )
    server = RunningServer(process, f"127.0.0.1:{port}", log)
    try:
        wait_until_serving(server, start_timeout_s)
        yield server
    finally:
        stop(process)


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *args]
