"""`make run`'s launcher (`python -m services`): it keeps the services' output flowing,
says which service exited and how, and always exits on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from services.__main__ import SERVICES
from tests.support import tls
from tests.support.database import fresh_database

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Launcher:
    def __init__(self, process: asyncio.subprocess.Process, ports: dict[str, int]) -> None:
        self.process = process
        self.ports = ports
        self.lines: list[str] = []

    async def read_until(self, text: str, seconds: float = 60) -> None:
        assert self.process.stdout is not None

        async def scan() -> None:
            assert self.process.stdout is not None
            while line := await self.process.stdout.readline():
                self.lines.append(line.decode())
                if text in self.lines[-1]:
                    return
            raise AssertionError(f"launcher ended before {text!r}: {self.lines[-5:]}")

        await asyncio.wait_for(scan(), seconds)

    def child_pid(self, name: str) -> int:
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid), "-f", f"services.{name} serve"],
            capture_output=True,
            text=True,
            check=False,
        )
        return int(found.stdout.split()[0])


@pytest_asyncio.fixture(loop_scope="session")
async def launcher(db_server: str, request: pytest.FixtureRequest) -> AsyncIterator[Launcher]:
    extra: dict[str, str] = getattr(request, "param", {})
    async with fresh_database(db_server) as url:
        ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        env = {
            **os.environ,
            "DATABASE_URL": url,
            **{f"{n.upper()}_PORT": str(p) for n, p in ports.items()},
            **extra,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown can end it all
        )
        launched = Launcher(process, ports)
        try:
            await launched.read_until("Ready.")
            yield launched
        finally:
            # SIGTERM, as an operator would: the launcher stops its services. A launcher
            # killed outright would leave them running, holding its output pipe open.
            if process.returncode is None:
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 40)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


async def test_a_dead_service_is_named_with_how_it_ended(launcher: Launcher) -> None:
    os.kill(launcher.child_pid("credits"), signal.SIGKILL)
    await launcher.read_until("credits was killed by SIGKILL", seconds=30)
    assert await asyncio.wait_for(launcher.process.wait(), 30) == 1


@pytest.mark.parametrize("launcher", [{"POOL_TRACES": "console"}], indirect=True)
async def test_chatty_services_keep_answering_and_sigterm_stops_everything(
    launcher: Launcher,
) -> None:
    async def drain() -> None:  # the test reads what the launcher forwards
        assert launcher.process.stdout is not None
        while await launcher.process.stdout.read(65536):
            pass

    reader = asyncio.create_task(drain())
    address = f"127.0.0.1:{launcher.ports['pool']}"
    async with tls.channel(address) as channel:
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        # Each traced call prints a multi-line span: far more than a pipe holds (64 KiB).
        for _ in range(400):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.GetPool(pb.GetPoolRequest(company_id="x", currency="USD"), timeout=5)
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    launcher.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(launcher.process.wait(), 40) == 0
    reader.cancel()


async def drain(launcher: Launcher) -> None:
    """Reads what the launcher forwards, so it never blocks on a full pipe."""
    assert launcher.process.stdout is not None
    while await launcher.process.stdout.read(65536):
        pass


async def test_off_the_default_ports_it_prints_the_line_that_finds_it(launcher: Launcher) -> None:
    """The fixture's ports are not the defaults: the launcher prints an `export` line, and
    the `licensing` command run with just that line's variables finds every service."""
    await launcher.read_until("export ", seconds=10)
    hint = launcher.lines[-1].strip()
    exported = dict(item.split("=", 1) for item in hint.split()[1:])
    assert exported == {f"{n.upper()}_ADDRESS": f"127.0.0.1:{p}" for n, p in launcher.ports.items()}
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LICENSING_") and not k.endswith(("_PORT", "_ADDRESS"))
    }
    # Where the launcher's certificates are (`make run`'s are found in .local/pki).
    clean["LICENSING_PKI_DIR"] = os.environ["LICENSING_PKI_DIR"]
    cli = os.path.join(os.path.dirname(sys.executable), "licensing")
    found = await asyncio.to_thread(
        subprocess.run,
        [cli, "services", "--json"],
        env={**clean, **exported},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert found.returncode == 0, found.stderr + found.stdout
    # Stopped the way Ctrl-C stops it, so no service outlives it holding our pipe.
    reader = asyncio.create_task(drain(launcher))
    launcher.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(launcher.process.wait(), 40) == 0
    reader.cancel()


async def test_every_launched_service_requires_mutual_tls(launcher: Launcher) -> None:
    for name, port in launcher.ports.items():
        address = f"127.0.0.1:{port}"
        async with tls.channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING, name
        async with grpc.aio.insecure_channel(address) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_pb2_grpc.HealthStub(plaintext).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, name
    launcher.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(launcher.process.wait(), 40) == 0
