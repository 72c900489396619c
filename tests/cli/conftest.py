"""The installed `licensing` command against live services, each its own process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.database import migrated_database
from tests.support.processes import spawned

ROOT = Path(__file__).resolve().parents[2]
HAS_BILLING = (ROOT / "services" / "billing" / "app.py").exists()
HAS_PROVISIONING = (ROOT / "services" / "provisioning" / "app.py").exists()

needs_billing = pytest.mark.skipif(not HAS_BILLING, reason="services/billing does not exist yet")
needs_provisioning = pytest.mark.skipif(
    not HAS_PROVISIONING, reason="services/provisioning does not exist yet"
)


def executable() -> str:
    found = shutil.which("licensing", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.fail("`licensing` is not installed: run `make install`")
    return found


def free_address() -> str:
    """An address where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error(self) -> Any:
        """The JSON error report of a `--json` command that failed."""
        return json.loads(self.stderr)["error"]


@dataclass
class Cli:
    """Runs `licensing` with the platform's addresses and one company."""

    env: dict[str, str]

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        done = subprocess.run(
            [executable(), *args],
            env={**os.environ, "COLUMNS": "250", **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.code == 0, f"licensing {' '.join(args)}: {result.stderr}{result.stdout}"
        return result

    def for_company(self, company: str) -> Cli:
        return Cli({**self.env, "LICENSING_COMPANY": company})

    def office(self, currency: str = "USD", *extra: str) -> str:
        """Creates an office of the company; returns its id."""
        created = self.ok("office", "create", "--currency", currency, "--json", *extra).json()
        return str(created["office"]["office_id"])


@dataclass
class Platform:
    addresses: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        env = {f"LICENSING_{name.upper()}": address for name, address in self.addresses.items()}
        for name in ("billing", "provisioning"):
            env.setdefault(f"LICENSING_{name.upper()}", free_address())
        return env


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cli_database_url(db_server: str) -> AsyncIterator[str]:
    """The CLI's services run for the whole session on the database clock: they get a
    database of their own, so their hold sweeper and purchase recovery never act on the
    fake-clock data of other tests."""
    async with migrated_database(db_server) as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(cli_database_url: str) -> AsyncIterator[Platform]:
    database_url = cli_database_url
    quiet = {f"{n}_LOG_LEVEL": "WARNING" for n in ("POOL", "CREDITS", "BILLING", "PROVISIONING")}
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            spawned("pool", {**quiet, "POOL_DATABASE_URL": database_url, "POOL_PORT": "0"})
        )
        credits = await stack.enter_async_context(
            spawned("credits", {**quiet, "CREDITS_DATABASE_URL": database_url, "CREDITS_PORT": "0"})
        )
        addresses = {"pool": pool.address, "credits": credits.address}
        peers = {"POOL_ADDRESS": pool.address}
        if HAS_BILLING:
            billing = await stack.enter_async_context(
                spawned(
                    "billing",
                    {
                        **quiet,
                        **peers,
                        "CREDITS_ADDRESS": credits.address,
                        "BILLING_DATABASE_URL": database_url,
                        "BILLING_PORT": "0",
                    },
                )
            )
            addresses["billing"] = billing.address
            peers["BILLING_ADDRESS"] = billing.address
        if HAS_PROVISIONING:
            provisioning = await stack.enter_async_context(
                spawned(
                    "provisioning",
                    {
                        **quiet,
                        **peers,
                        "PROVISIONING_DATABASE_URL": database_url,
                        "PROVISIONING_PORT": "0",
                    },
                )
            )
            addresses["provisioning"] = provisioning.address
        yield Platform(addresses)


@pytest.fixture
def cli(platform: Platform) -> Cli:
    """The command for a fresh company (LICENSING_COMPANY), so tests never share state."""
    return Cli({**platform.env, "LICENSING_COMPANY": str(uuid.uuid4())})
