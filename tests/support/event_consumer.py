"""A consumer of a pool's event stream, as a process that tests kill at random points.

`python -m tests.support.event_consumer ADDRESS COMPANY_ID DIRECTORY` follows the
company's stream from the cursor in DIRECTORY/cursor (none: from the start). For each
message it first processes the events (appends their ids to DIRECTORY/seen, flushed),
then saves the message's cursor (written aside and renamed, so a kill leaves the old
cursor or the new one). A kill between the two redelivers those events on the next
start: at least once, deduplicated by event id.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from libs.common.local_pki import LocalPki
from licensing.client import Tls, aio_channel
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc

# How long handling one event takes: a kill often lands between handling a message's
# first events and saving its cursor, and those events come again.
PROCESSING_SECONDS = 0.005
IDENTITY = "consumer-notifications"  # may watch the event streams (the shipped policy)


def credentials() -> Tls:
    """The consumer's certificate from the test run's PKI (its directory is inherited
    from the test process)."""
    files = LocalPki(Path(os.environ["LICENSING_PKI_DIR"])).credentials(IDENTITY)
    return Tls.from_files(files.ca, files.cert, files.key)


async def consume(address: str, company_id: str, directory: Path) -> None:
    cursor_file, seen_file = directory / "cursor", directory / "seen"
    cursor = cursor_file.read_text() if cursor_file.exists() else ""
    async with aio_channel(address, tls=credentials()) as channel:
        pool = pool_pb2_grpc.PoolServiceStub(channel)
        request = pool_pb2.WatchEventsRequest(company_id=company_id, cursor=cursor)
        with seen_file.open("a") as seen:
            async for message in pool.WatchEvents(request):
                for event in message.events:
                    seen.write(f"{event.event_id}\n")
                    seen.flush()
                    os.fsync(seen.fileno())
                    await asyncio.sleep(PROCESSING_SECONDS)
                aside = directory / "cursor.new"
                aside.write_text(message.cursor)
                aside.replace(cursor_file)


if __name__ == "__main__":
    asyncio.run(consume(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
