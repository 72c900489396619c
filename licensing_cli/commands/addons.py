"""`licensing addon`: add-ons of a base license (provisioning); each takes a unit."""

from __future__ import annotations

from typing import Annotated

import typer

from licensing.provisioning.v1 import provisioning_pb2
from licensing_cli.commands.licenses import LicenseId, license_result, returned_note
from licensing_cli.options import Company, Json, RequestId, request_id
from licensing_cli.session import session_of

app = typer.Typer(help="Add-ons of base licenses: add, remove.", no_args_is_help=True)

AddonTypes = Annotated[
    list[str], typer.Argument(help="Add-on type codes, e.g. call_recording device_ip_phone.")
]


@app.command("add")
def add(
    ctx: typer.Context,
    license_id: LicenseId,
    addon_types: AddonTypes,
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Attach add-ons to a license: all of them or none (each needs a free unit)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.AddAddonsResponse = provisioning.call(
        provisioning.stub.AddAddons,
        provisioning_pb2.AddAddonsRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            license_id=license_id,
            addon_types=addon_types,
        ),
    )
    license_result(out, session, "Add-ons added", response)


@app.command("remove")
def remove(
    ctx: typer.Context,
    license_id: LicenseId,
    addon_types: AddonTypes,
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Detach add-ons from a license; their units go back to the pool."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.RemoveAddonsResponse = provisioning.call(
        provisioning.stub.RemoveAddons,
        provisioning_pb2.RemoveAddonsRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            license_id=license_id,
            addon_types=addon_types,
        ),
    )

    license_result(out, session, "Add-ons removed", response)
    if not out.json:
        returned_note(out, list(response.returned_unit_ids))
