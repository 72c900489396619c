"""The lock files agree with pyproject.toml and with each other, and the runtime lock
holds only what the services need (the image installs requirements.lock alone).
`make lock` rewrites all three after a change to pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# Only developers, the CLI or the build stage use these: never in the runtime image.
NOT_AT_RUNTIME = {"pgserver", "grpcio-tools", "typer", "rich", "mypy-protobuf", "pytest"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text(encoding="utf-8")
    found = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            found[canonical(match[1])] = match[2]
    # Every pin carries its hashes.
    assert text.count("==") <= text.count("--hash=sha256:"), lock
    return found


def wanted(requirements: list[str]) -> dict[str, str]:
    found = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        found[canonical(name.split("[")[0])] = version
    return found


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
CORE = wanted(PROJECT["dependencies"])
EXTRAS = {k: wanted(v) for k, v in PROJECT["optional-dependencies"].items()}


def test_the_runtime_lock_has_the_services_dependencies_at_their_pins() -> None:
    runtime = pins("requirements.lock")
    for name, version in CORE.items():
        assert runtime.get(name) == version, name
    assert not NOT_AT_RUNTIME & set(runtime), NOT_AT_RUNTIME & set(runtime)


def test_the_dev_lock_has_every_extra_at_its_pin() -> None:
    dev = pins("requirements-dev.lock")
    for group in [CORE, *EXTRAS.values()]:
        for name, version in group.items():
            assert dev.get(name) == version, name


def test_the_build_lock_has_the_code_generator() -> None:
    build = pins("requirements-build.lock")
    for name, version in EXTRAS["codegen"].items():
        assert build.get(name) == version, name
    assert "setuptools" in build  # the image builds its wheel without build isolation


def test_a_package_has_one_version_in_every_lock() -> None:
    dev = pins("requirements-dev.lock")
    for lock in ("requirements.lock", "requirements-build.lock"):
        for name, version in pins(lock).items():
            assert dev.get(name) == version, f"{lock}: {name}=={version}, dev {dev.get(name)}"
