"""What every command gets from the top-level options: clients and the output mode."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from licensing_cli.clients import Clients
from licensing_cli.output import Output


@dataclass
class Session:
    """The state of one `licensing` invocation."""

    clients: Clients
    json: bool

    def output(self, json_flag: bool = False) -> Output:
        """The output, in JSON when `--json` was given before or after the command."""
        return Output(json=self.json or json_flag)


def session_of(ctx: typer.Context) -> Session:
    found = ctx.find_root().obj
    if not isinstance(found, Session):
        raise RuntimeError("the licensing app callback did not run")
    return found
