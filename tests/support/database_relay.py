"""A TCP relay in front of the test PostgreSQL that a test can cut and restore.

Services pointed at the relay see what they would see if the database died: `cut()`
drops every relayed connection (mid-call queries fail, idle pool connections are lost)
and refuses new ones; `black_hole()` drops them too, but takes new connections and never
answers on them, like a host that is gone; `restore()` relays again on the same port, as
a restarted server would. The database itself keeps running for everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.engine import make_url

from libs.common.database import plain_url


class DatabaseRelay:
    def __init__(self, target_url: str) -> None:
        self._target = make_url(plain_url(target_url))
        self._server: asyncio.Server | None = None
        self._port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._answering = True

    @property
    def url(self) -> str:
        """The target's URL (same user and database), through the relay."""
        url = self._target.difference_update_query(["host"])
        return url.set(host="127.0.0.1", port=self._port).render_as_string(hide_password=False)

    async def restore(self) -> None:
        """Relays connections (again, on the same port)."""
        self._answering = True
        await self._listen()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuses new connections and drops every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def black_hole(self) -> None:
        """Drops every open connection; new ones are taken and never answered."""
        await self.cut()
        self._answering = False
        await self._listen()

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = self._target.query.get("host")
        port = self._target.port or 5432
        if isinstance(socket_dir, str) and socket_dir.startswith("/"):
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
        return await asyncio.open_connection(self._target.host or "127.0.0.1", port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._answering:
            self._writers.add(writer)  # held open, silent, until cut
            return
        try:
            upstream_reader, upstream_writer = await self._open_target()
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        self._writers.discard(sink)
        sink.transport.abort()

    async def close(self) -> None:
        await self.cut()
        for pump in list(self._pumps):
            pump.cancel()


@contextlib.asynccontextmanager
async def database_relay(target_url: str) -> AsyncIterator[DatabaseRelay]:
    relay = DatabaseRelay(target_url)
    await relay.restore()
    try:
        yield relay
    finally:
        await relay.close()
