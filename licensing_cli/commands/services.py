"""`licensing services`: what answers at each address (health and reflection)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import typer
from rich.text import Text

from licensing_cli.clients import SERVICES
from licensing_cli.discovery import Probe, probe
from licensing_cli.options import Json
from licensing_cli.session import session_of


def services(ctx: typer.Context, json_flag: Json = False) -> None:
    """Check each service with gRPC health and list what it serves through reflection.

    Exits 1 when a service does not answer, or answers without its expected service.
    """
    session = session_of(ctx)
    out = session.output(json_flag)
    addresses = session.clients.addresses
    with ThreadPoolExecutor(len(addresses)) as workers:
        probes = dict(zip(addresses, workers.map(probe, addresses.values()), strict=True))

    def expected(name: str, found: Probe) -> bool:
        return SERVICES[name][2] in found.services

    report = {
        name: {
            "address": found.address,
            "health": found.health,
            "services": list(found.services),
            "expected_service": SERVICES[name][2],
            "ok": found.health == "SERVING" and expected(name, found),
            "problem": found.problem,
        }
        for name, found in probes.items()
    }

    def show() -> None:
        rows = []
        for name, found in probes.items():
            if not found.reachable:
                status = "[red]unreachable[/red]"
            elif not expected(name, found):
                status = f"[yellow]{found.health}, without {SERVICES[name][2]}[/yellow]"
            elif found.health == "SERVING":
                status = "[green]SERVING[/green]"
            else:
                status = f"[yellow]{found.health}[/yellow]"
            listed = "\n".join(found.services) or found.problem
            rows.append((name, found.address, Text.from_markup(status), listed))
        out.table("Services", ["service", "address", "health", "reflection lists"], rows)
        if any(not found.reachable for found in probes.values()):
            out.note("Start the platform with `make run`, or set the addresses (see --help).")

    out.result({"services": report}, show)
    if not all(entry["ok"] for entry in report.values()):
        raise typer.Exit(1)
