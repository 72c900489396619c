"""Several server processes on one port (`<SVC>_WORKERS`), through SO_REUSEPORT.

A Python process answers calls on one core at most: the event loop and gRPC's per-call
work hold the GIL. With `<SVC>_WORKERS=N` the service runs N processes that listen on the
same port, and the kernel spreads the connections over them (connections, not calls: a
client with one connection stays with one worker). Each worker is a whole service, like a
replica: its own database pool, writers and background work, so what keeps replicas
correct (row and advisory locks, leases) keeps workers correct.

The process that starts them only supervises: it says which worker ended and with what
code, and stops them all (SIGTERM, then the shutdown grace) when one ends or when it is
told to stop, so the pod restarts whole instead of serving on fewer workers.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from libs.common.settings import ServiceSettings

log = logging.getLogger(__name__)

WORKER = "LICENSING_WORKER"  # set in a worker's environment: its number
# What the supervisor adds to the shutdown grace before it kills a worker still running.
KILL_AFTER_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.2


def is_worker() -> bool:
    """Whether this process is one of a supervisor's workers."""
    return WORKER in os.environ


def shares_port(settings: ServiceSettings) -> bool:
    """Whether the service's ports are shared with other workers (SO_REUSEPORT)."""
    return settings.workers > 1


def reserve(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, so the workers can
    bind the port too and no other program takes it; port 0 picks a free one."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    held = socket.socket(family, kind, proto)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind(address)
    return held, int(held.getsockname()[1])


def supervise(name: str, settings: ServiceSettings) -> int:
    """Runs `settings.workers` workers of `python -m services.<name> serve` until one ends or
    SIGTERM/SIGINT arrives; the exit code to end with."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    env = dict(os.environ)
    held: list[socket.socket] = []
    sock, port = reserve(settings.host, settings.port)
    held.append(sock)
    env[f"{prefix}PORT"] = str(port)
    if settings.health_port is not None:
        sock, health_port = reserve(settings.host, settings.health_port)
        held.append(sock)
        env[f"{prefix}HEALTH_PORT"] = str(health_port)
    stopping: list[int] = []

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    argv = [sys.executable, "-m", f"services.{name}", "serve"]
    workers = [
        subprocess.Popen(argv, env={**env, WORKER: str(number)})
        for number in range(settings.workers)
    ]
    log.info("workers started", extra={"workers": settings.workers, "port": port})
    code = 0
    while not stopping:
        ended = [(n, w.returncode) for n, w in enumerate(workers) if w.poll() is not None]
        if ended:
            number, code = ended[0]
            log.error("a worker ended; stopping the others", extra={"worker": number, "code": code})
            print(f"{name}: worker {number} exited with code {code}", file=sys.stderr, flush=True)
            # A worker that ends on its own is a failure of the service; a signal's
            # number as a shell would say it.
            code = 128 - code if code < 0 else code or 1
            break
        time.sleep(POLL_SECONDS)
    _stop_all(workers, settings.shutdown_grace_seconds + KILL_AFTER_GRACE_SECONDS)
    for sock in held:
        sock.close()
    return code


def _stop_all(workers: Sequence[subprocess.Popen[bytes]], within: float) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + within
    for number, worker in enumerate(workers):
        try:
            worker.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            log.error("a worker did not stop in time; killed", extra={"worker": number})
            worker.kill()
            worker.wait()
