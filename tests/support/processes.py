"""Services as separate processes, the way they run in production."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

LISTENING = re.compile(rb"(\w+) listening on (\S+)")


@dataclass
class ServiceProcess:
    name: str
    process: asyncio.subprocess.Process
    address: str

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode or 0

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


def _log_file(log: Path | None) -> BinaryIO:
    return open(log or os.devnull, "ab")


async def spawn(
    name: str, env: Mapping[str, str], startup_seconds: float = 30, log: Path | None = None
) -> ServiceProcess:
    """Starts `python -m services.<name> serve` and waits until it listens; its log
    (stderr) goes to `log` when given."""
    with _log_file(log) as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{name}",
            "serve",
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdout is not None

    async def address() -> str:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            match = LISTENING.search(line)
            if match:
                return match.group(2).decode()
        raise RuntimeError(f"{name} exited before listening (code {await process.wait()})")

    found = await asyncio.wait_for(address(), startup_seconds)
    return ServiceProcess(name, process, found)


@asynccontextmanager
async def spawned(
    name: str, env: Mapping[str, str], log: Path | None = None
) -> AsyncIterator[ServiceProcess]:
    service = await spawn(name, env, log=log)
    try:
        yield service
    finally:
        await service.stop()
