"""`licensing extension`: the extension key and number of a Phone System license."""

from __future__ import annotations

from typing import Annotated

import typer

from licensing.provisioning.v1 import provisioning_pb2
from licensing_cli.commands.licenses import LicenseId, license_result
from licensing_cli.options import Company, Json, RequestId, request_id
from licensing_cli.session import session_of

app = typer.Typer(help="Extensions and numbers of Phone System licenses.", no_args_is_help=True)


@app.command("set")
def set_extension(
    ctx: typer.Context,
    license_id: LicenseId,
    company: Company,
    ext_key: Annotated[
        str, typer.Option("--ext-key", help="The extension key (empty: none), stored verbatim.")
    ] = "",
    number: Annotated[
        str, typer.Option("--number", help="The number (DID), 7 to 15 digits (empty: none).")
    ] = "",
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Set a Phone System license's extension key and number (what is left out is cleared)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.SetExtensionResponse = provisioning.call(
        provisioning.stub.SetExtension,
        provisioning_pb2.SetExtensionRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            license_id=license_id,
            ext_key=ext_key,
            number=number,
        ),
    )
    license_result(out, session, "Extension set", response)
