"""The fuzzed platform: all four services on a database of their own (its row counts are
ours alone), a small real data set, and the run's size and seed."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from libs.common.clock import FakeClock
from tests.fuzz.corpus import Corpus
from tests.fuzz.platform import Platform, running_platform
from tests.fuzz.tables import TableWatch
from tests.fuzz.tenants import teach
from tests.support.database import migrated_database

DEFAULT_EXAMPLES = 100


@dataclass(frozen=True)
class Budget:
    """FUZZ_EXAMPLES requests per RPC (a longer run: a larger number), drawn from FUZZ_SEED
    (random unless set; every failure prints it)."""

    examples: int
    seed: int


@pytest.fixture(scope="session")
def budget() -> Budget:
    seed = os.environ.get("FUZZ_SEED")
    return Budget(
        int(os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES)),
        int(seed) if seed else secrets.randbelow(2**32),
    )


@dataclass
class Fuzzed:
    platform: Platform
    corpus: Corpus
    tables: TableWatch


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzzed(db_server: str) -> AsyncIterator[Fuzzed]:
    async with migrated_database(db_server) as url, running_platform(url, FakeClock()) as platform:
        corpus = await teach(platform)
        yield Fuzzed(platform, corpus, await TableWatch.of(platform.db))
