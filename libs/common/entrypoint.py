"""`python -m services.<svc> [serve|migrate]`: the one command line every service has."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from libs.common import workers
from libs.common.server import wait_for_signal
from libs.common.settings import ServiceSettings
from libs.common.telemetry import configure_logging, configure_telemetry

log = logging.getLogger(__name__)


class App(Protocol):
    @property
    def port(self) -> int: ...

    async def stop(self, grace: float = 0) -> None: ...


def main(
    name: str,
    settings: ServiceSettings,
    migrate: Callable[[str], None],
    start: Callable[[], Awaitable[App]],
) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    configure_logging(name, settings.log_level)
    if args.command == "migrate":
        migrate(settings.database_url)
        log.info("migrated")
        return
    if settings.workers > 1 and not workers.is_worker():
        raise SystemExit(workers.supervise(name, settings))
    telemetry = configure_telemetry(name, settings.traces)
    try:
        asyncio.run(_serve(name, settings, start))
    finally:
        telemetry.shutdown()  # sends the spans and metrics still buffered


async def _serve(name: str, settings: ServiceSettings, start: Callable[[], Awaitable[App]]) -> None:
    app = await start()
    address = f"{settings.host}:{app.port}"
    log.info("listening", extra={"address": address})
    # One plain line on stdout, for launchers and people.
    print(f"{name} listening on {address}", flush=True)
    await wait_for_signal()
    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace_seconds})
    await app.stop(settings.shutdown_grace_seconds)
