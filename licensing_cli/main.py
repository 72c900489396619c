"""The `licensing` command: top-level options, the command groups, and error handling."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from licensing_cli.addresses import default_address
from licensing_cli.clients import SERVICES, CallFailed, Clients
from licensing_cli.commands import (
    addons,
    checkout,
    company,
    credits,
    cycle,
    extensions,
    imports,
    licenses,
    office,
    plans,
    pool,
    services,
    units,
    usage,
    users,
)
from licensing_cli.errors import report
from licensing_cli.security import SecuritySetupError
from licensing_cli.session import Session

app = typer.Typer(
    name="licensing",
    help="Operate the licensing platform: offices and plans, pools, checkout, users, "
    "licenses, add-ons and extensions, CSV imports, usage credits and invoices. Addresses "
    "default to what `make run` uses: the same POOL_PORT / POOL_ADDRESS (BILLING_, "
    "CREDITS_, PROVISIONING_) variables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _address(name: str) -> object:
    _default, env, _service = SERVICES[name]
    upper = name.upper()
    return typer.Option(
        f"--{name}",
        envvar=env,
        help=f"host:port of the {name} service. Default: ${upper}_ADDRESS, else "
        f"$LICENSING_HOST (127.0.0.1):${upper}_PORT, as `make run` uses them.",
        show_envvar=True,
    )


def _default(name: str) -> str:
    """What `make run` started `name` on, per the environment (licensing_cli/addresses.py)."""
    port = int(SERVICES[name][0].rsplit(":", 1)[1])
    return default_address(name, port)


@app.callback()
def root(
    ctx: typer.Context,
    pool_address: Annotated[str, _address("pool")] = _default("pool"),
    billing_address: Annotated[str, _address("billing")] = _default("billing"),
    credits_address: Annotated[str, _address("credits")] = _default("credits"),
    provisioning_address: Annotated[str, _address("provisioning")] = _default("provisioning"),
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
app.add_typer(units.app, name="unit")
app.add_typer(checkout.app, name="checkout")
app.add_typer(users.app, name="user")
app.add_typer(licenses.app, name="license")
app.add_typer(addons.app, name="addon")
app.add_typer(extensions.app, name="extension")
app.add_typer(plans.app, name="plan")
app.add_typer(imports.app, name="import")
app.add_typer(usage.app, name="usage")
app.add_typer(credits.app, name="credits")
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
