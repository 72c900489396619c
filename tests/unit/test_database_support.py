"""The tests' own PostgreSQL choice (tests/support/database.py): a Docker container through
testcontainers' maintained core API, and the embedded server when no Docker engine answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import database


def test_no_docker_engine_means_the_embedded_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert database.docker_answers() is False
    assert database.server_kind() == "embedded"


def test_a_given_server_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://u:p@127.0.0.1:1/x")
    assert database.server_kind() == "given"


def test_the_container_api_used_is_not_deprecated() -> None:
    """A fresh interpreter imports what `postgres_container` imports with every
    DeprecationWarning an error (the old `testcontainers.postgres` module warns)."""
    code = (
        "import testcontainers.core.container, testcontainers.core.wait_strategies\n"
        "import tests.support.database\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    old = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import testcontainers.postgres"],
        capture_output=True,
        text=True,
        check=False,
    )
    # The check bites: the deprecated module does warn in the pinned release.
    assert old.returncode != 0
    assert "deprecated" in old.stderr


def test_same_major_version_as_the_embedded_server() -> None:
    from pgserver._commands import POSTGRES_BIN_PATH

    version = subprocess.run(
        [str(POSTGRES_BIN_PATH / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    major = version.split()[-1].split(".")[0]
    assert f"postgres:{major}-alpine" == database.POSTGRES_IMAGE
