"""The command finds the platform through the variables `make run` uses: `<SVC>_ADDRESS`,
or `<SVC>_PORT` on 127.0.0.1, when no `--pool`-style option or `LICENSING_<SVC>` says."""

from __future__ import annotations

import json
import os
import subprocess

from licensing_cli.addresses import default_address
from services.__main__ import SERVICES, export_line
from tests.cli.conftest import Platform, executable, free_address

NAMES = ("pool", "billing", "credits", "provisioning")


def run_services(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`licensing services --json` with none of the variables of the test's own shell
    but where the run's certificates are (`make run`'s are found in .local/pki)."""
    ours = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LICENSING_") and not any(k.startswith(f"{n.upper()}_") for n in NAMES)
    }
    ours["LICENSING_PKI_DIR"] = os.environ["LICENSING_PKI_DIR"]
    return subprocess.run(
        [executable(), "services", "--json"],
        env={**ours, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_precedence_of_the_variables() -> None:
    assert default_address("pool", 50051, {}) == "127.0.0.1:50051"
    assert default_address("pool", 50051, {"POOL_PORT": "6001"}) == "127.0.0.1:6001"
    assert (
        default_address("pool", 50051, {"POOL_PORT": "6001", "LICENSING_HOST": "10.0.0.5"})
        == "10.0.0.5:6001"
    )
    both = {"POOL_PORT": "6001", "POOL_ADDRESS": "pool.internal:7000"}
    assert default_address("pool", 50051, both) == "pool.internal:7000"
    # Another service's variables are not this one's.
    assert default_address("billing", 50052, both) == "127.0.0.1:50052"


def test_the_launcher_prints_an_export_line_only_off_the_defaults() -> None:
    assert export_line("127.0.0.1", dict(SERVICES)) is None
    moved = {**SERVICES, "pool": 6001}
    line = export_line("127.0.0.1", moved)
    assert line is not None
    assert line.startswith("export ")
    assert "POOL_ADDRESS=127.0.0.1:6001" in line.split()
    assert "BILLING_ADDRESS=127.0.0.1:50052" in line.split()


def test_ports_as_make_run_takes_them_find_every_service(platform: Platform) -> None:
    env = {}
    for name, address in platform.addresses.items():
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        env[f"{name.upper()}_PORT"] = port
    found = run_services(env)
    assert found.returncode == 0, found.stderr + found.stdout
    report = json.loads(found.stdout)["services"]
    for name, address in platform.addresses.items():
        assert report[name]["address"] == address
        assert report[name]["ok"] is True, report[name]


def test_addresses_as_peers_get_them_find_every_service(platform: Platform) -> None:
    env = {f"{name.upper()}_ADDRESS": a for name, a in platform.addresses.items()}
    # An address wins over a port that points nowhere.
    env.update({f"{name.upper()}_PORT": free_address().rsplit(":", 1)[1] for name in NAMES})
    found = run_services(env)
    assert found.returncode == 0, found.stderr + found.stdout


def test_without_the_variables_the_defaults_are_used(platform: Platform) -> None:
    found = run_services({})
    report = json.loads(found.stdout)["services"]
    for name in NAMES:
        assert report[name]["address"] == f"127.0.0.1:{SERVICES[name]}"
    # This command's own LICENSING_<SVC> wins over <SVC>_ADDRESS.
    pool = platform.addresses["pool"]
    found = run_services({"LICENSING_POOL": pool, "POOL_ADDRESS": free_address()})
    assert json.loads(found.stdout)["services"]["pool"]["address"] == pool
