"""The `licensing` command: top-level options, the command groups, and error handling."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from licensing_cli.clients import SERVICES, CallFailed, Clients
from licensing_cli.commands import (
    checkout,
    company,
    cycle,
    imports,
    office,
    pool,
    services,
    usage,
    users,
)
from licensing_cli.errors import report
from licensing_cli.security import SecuritySetupError
from licensing_cli.session import Session

app = typer.Typer(
    name="licensing",
    help="Operate the licensing platform: offices and plans, pools, checkout, users, CSV "
    "imports, usage credits and invoices. Addresses default to what `make run` uses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _address(name: str, help_text: str) -> object:
    _default, env, _service = SERVICES[name]
    return typer.Option(f"--{name}", envvar=env, help=help_text, show_envvar=True)


@app.callback()
def root(
    ctx: typer.Context,
    pool_address: Annotated[str, _address("pool", "host:port of the pool service.")] = SERVICES[
        "pool"
    ][0],
    billing_address: Annotated[
        str, _address("billing", "host:port of the billing service.")
    ] = SERVICES["billing"][0],
    credits_address: Annotated[
        str, _address("credits", "host:port of the credits service.")
    ] = SERVICES["credits"][0],
    provisioning_address: Annotated[
        str, _address("provisioning", "host:port of the provisioning service.")
    ] = SERVICES["provisioning"][0],
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", envvar="LICENSING_TIMEOUT", min=0.1, help="Deadline of each call, seconds."
        ),
    ] = 30.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON for scripts (also after any command).")
    ] = False,
) -> None:
    addresses = {
        "pool": pool_address,
        "billing": billing_address,
        "credits": credits_address,
        "provisioning": provisioning_address,
    }
    session = Session(Clients(addresses, timeout), json_output)
    ctx.obj = session
    ctx.call_on_close(session.clients.close)


app.command("services")(services.services)
app.add_typer(company.app, name="company")
app.add_typer(office.app, name="office")
app.add_typer(pool.app, name="pool")
app.add_typer(checkout.app, name="checkout")
app.add_typer(users.app, name="user")
app.add_typer(imports.app, name="import")
app.add_typer(usage.app, name="usage")
app.add_typer(cycle.app, name="cycle")


def main() -> None:
    """Entry point of the installed `licensing` command."""
    as_json = "--json" in sys.argv[1:]
    try:
        app()
    except CallFailed as failure:
        sys.exit(report(failure, Console(stderr=True, highlight=False), as_json))
    except SecuritySetupError as problem:
        Console(stderr=True, highlight=False).print(f"error: {problem}", markup=False)
        sys.exit(1)
