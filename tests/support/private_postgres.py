"""A PostgreSQL server of one test's own, which the test may crash (`kill -9`) and restart.

Built from the binaries the `pgserver` package ships, on a fresh data directory and a
free TCP port on 127.0.0.1. PostgreSQL refuses to run as root: as root, the server runs
as the unprivileged user pgserver itself uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import asyncpg
from pgserver._commands import POSTGRES_BIN_PATH

SERVER_USER = "pgserver"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """The processes `pid` started (read before it dies: orphans get a new parent)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # The command name, in parentheses, may hold spaces: the fields after it are fixed.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.log_path = root / "postgres.log"
        self.port = _free_port()
        self._user = SERVER_USER if os.geteuid() == 0 else None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        if self._user is not None:
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(self._user)
            # What pgserver does for its own server: let that user reach and run the binaries.
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            root = self.data_dir.parent
            ensure_prefix_permissions(root)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                *(POSTGRES_BIN_PATH / "initdb", "-D", self.data_dir, "-U", "postgres"),
                *("--auth=trust", "--encoding=utf8"),
            ],
            check=True,
            user=self._user,
            stdout=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        """Starts the server (after a crash: crash recovery first) and waits until it answers."""
        with self._log_file() as log:
            self._process = await asyncio.create_subprocess_exec(
                *(POSTGRES_BIN_PATH / "postgres", "-D", self.data_dir),
                *("-p", str(self.port), "-h", "127.0.0.1", "-k", ""),
                user=self._user,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for _ in range(600):
            if self._process.returncode is not None:
                raise RuntimeError(f"postgres exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                connection = await asyncpg.connect(self.url, timeout=5)
                await connection.close()
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("postgres did not start")

    def _log_file(self) -> BinaryIO:
        return self.log_path.open("ab")

    async def crash(self) -> None:
        """`kill -9` of the postmaster. Its backends notice and exit; the server can only
        start again on this data directory once they are gone."""
        assert self._process is not None
        children = _children(self._process.pid)
        self._process.send_signal(signal.SIGKILL)
        await self._process.wait()
        for _ in range(300):
            if not any(_alive(child) for child in children):
                return
            await asyncio.sleep(0.1)
        for child in children:  # stuck past 30 s: the whole server is gone, as in an OOM kill
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                await asyncio.wait_for(self._process.wait(), timeout=30)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


@contextlib.asynccontextmanager
async def _running(server: PrivatePostgres) -> AsyncIterator[PrivatePostgres]:
    """`server` made and started; stopped and its folder deleted when the block ends."""
    try:
        await asyncio.to_thread(server.init)
        await server.start()
        yield server
    finally:
        await server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    async with _running(PrivatePostgres(Path(tempfile.mkdtemp(prefix="licensing-crash-")))) as s:
        yield s


class StreamingReplica(PrivatePostgres):
    """A hot standby of `primary`, made with pg_basebackup, streaming its WAL."""

    def __init__(self, root: Path, primary: PrivatePostgres) -> None:
        super().__init__(root)
        self._primary = primary

    def init(self) -> None:
        # -R: standby.signal and primary_conninfo, so the copy starts as a streaming standby.
        subprocess.run(
            [
                *(POSTGRES_BIN_PATH / "pg_basebackup", "-D", self.data_dir, "-R", "-X", "stream"),
                *("-h", "127.0.0.1", "-p", str(self._primary.port), "-U", "postgres"),
            ],
            check=True,
            user=self._user,
            stdout=subprocess.DEVNULL,
        )


@contextlib.asynccontextmanager
async def streaming_replica(primary: PrivatePostgres) -> AsyncIterator[PrivatePostgres]:
    """A hot standby of `primary` (which must be running) on a port of its own."""
    root = primary.data_dir.parent / "replica"
    root.mkdir()
    if primary._user is not None:  # pg_basebackup runs as the server's user
        entry = pwd.getpwnam(primary._user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    async with _running(StreamingReplica(root, primary)) as server:
        yield server
