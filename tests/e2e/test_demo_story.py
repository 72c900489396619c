"""The demo story (`make demo`) as assertions.

The same story as `python -m licensing_cli.demo`, played by its own step functions with
the installed `licensing` command, against the four services started by the launcher
(`python -m services`, each its own process) on the test database and on free ports.
Every number checked is computed by hand from the story (tests/support/demo_story.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from licensing_cli.demo import Story
from licensing_cli.demo_platform import launched
from tests.support.demo_story import GRACE_SECONDS, assert_the_story_adds_up, play_on

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


def _play(database_url: str, workdir: Path) -> tuple[Story, dict[str, Any]]:
    with launched(workdir, GRACE_SECONDS, database_url=database_url) as platform:
        return play_on(platform, workdir)


async def test_the_demo_story(database_url: str, tmp_path: Path) -> None:
    story, pool_counts = await asyncio.to_thread(_play, database_url, tmp_path)
    assert_the_story_adds_up(story, pool_counts)
