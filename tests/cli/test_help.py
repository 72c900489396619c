"""`--help` works for every group and command, without any service running."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer.main

from licensing_cli.main import app
from tests.cli.conftest import Cli, free_address

COMMANDS = {
    "services": [],
    "company": ["new", "show"],
    "office": ["create", "list"],
    "pool": ["enable", "show", "units", "add-units", "acquire", "return"],
    "unit": ["history"],
    "checkout": ["quote", "purchase", "remove"],
    "user": ["create", "delete", "change-license", "list"],
    "license": ["assign", "unassign", "reassign", "show", "search", "terminate"],
    "addon": ["add", "remove"],
    "extension": ["set"],
    "plan": ["list", "show", "set-price", "rename"],
    "import": ["template", "check", "apply", "status"],
    "usage": ["record", "balances", "totals", "list", "pooling", "grant"],
    "cycle": ["close", "invoice", "invoices"],
    "credits": ["alerts", "cap", "threshold"],
}


# Commands of a command's own group.
NESTED = (
    "credits cap set",
    "credits cap clear",
    "credits cap list",
    "credits threshold set",
    "credits threshold show",
)


def test_help_everywhere_needs_no_service() -> None:
    nowhere = {
        f"LICENSING_{name}": free_address()
        for name in ("POOL", "BILLING", "CREDITS", "PROVISIONING")
    }
    cli = Cli(nowhere)
    invocations = [["--help"]]
    for group, commands in COMMANDS.items():
        invocations.append([group, "--help"])
        invocations.extend([group, *command.split(), "--help"] for command in commands)
    with ThreadPoolExecutor(8) as workers:
        results = list(workers.map(lambda args: (args, cli(*args)), invocations))
    for args, result in results:
        assert result.code == 0, (args, result.stderr)
        assert "Usage: licensing" in result.stdout, args
    root = results[0][1].stdout
    for group in COMMANDS:
        assert group in root
    # The addresses and their environment variables are documented.
    assert "LICENSING_POOL" in root
    assert "50051" in root


def test_no_arguments_shows_help() -> None:
    result = Cli({})()
    assert "Usage: licensing" in result.stdout + result.stderr


def test_a_missing_company_is_a_usage_error() -> None:
    result = Cli({"LICENSING_COMPANY": ""})("pool", "show", "USD")
    assert result.code == 2
    assert "--company" in result.stderr


def _registered() -> dict[str, list[str]]:
    """Every group of the `licensing` app and its commands, as registered."""
    root = typer.main.get_command(app)
    commands = getattr(root, "commands", {})
    return {
        name: sorted(getattr(group, "commands", {})) for name, group in sorted(commands.items())
    }


def test_the_readme_lists_every_command_and_no_other() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### The command line", 1)[1].split("\n## ", 1)[0]
    listed = {}
    for line in section.splitlines():
        row = re.match(r"\| `([a-z-]+)` \|([^|]*)\|", line)
        if row:
            listed[row.group(1)] = sorted(re.findall(r"`([a-z-]+)`", row.group(2)))
    assert listed == _registered()
    assert {group: sorted(names) for group, names in COMMANDS.items()} == _registered()
