"""`licensing license`: base licenses of the reseller portal (provisioning): assign,
unassign, reassign, show, search, and terminate a subscription by its UUID."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from licensing.provisioning.v1 import provisioning_pb2
from licensing_cli.names import OfficeNames
from licensing_cli.options import (
    FIRST_PAGE,
    Company,
    Json,
    Paging,
    RequestId,
    paged,
    request_id,
)
from licensing_cli.output import Output, timestamp
from licensing_cli.pages import Listed, listed
from licensing_cli.session import Session, session_of

app = typer.Typer(
    help="Base licenses (auto_attendant, call_group, developer, phone_system): assign, "
    "unassign, reassign, show, search, terminate.",
    no_args_is_help=True,
)

LicenseId = Annotated[str, typer.Argument(help="The license (its subscription UUID).")]
UserArg = Annotated[str, typer.Argument(help="The user (UUID).")]


def addons_text(license: provisioning_pb2.License) -> str:
    return ", ".join(a.license_type for a in license.addons) or "—"


def user_names(session: Session, company: str, users: set[str]) -> dict[str, str]:
    """User id -> display name, for the users a table shows."""
    provisioning = session.clients.provisioning
    names: dict[str, str] = {}
    for user_id in sorted(u for u in users if u):
        response: provisioning_pb2.GetUserResponse = provisioning.call(
            provisioning.stub.GetUser,
            provisioning_pb2.GetUserRequest(company_id=company, user_id=user_id),
        )
        names[user_id] = response.user.display_name
    return names


def show_license(
    out: Output, session: Session, title: str, license: provisioning_pb2.License
) -> None:
    """Everything about one license: its subscription, user, office, extension, add-ons."""
    company = license.company_id
    user = user_names(session, company, {license.user_id}).get(license.user_id, "")
    office = OfficeNames.of(session.clients, company).label(license.office_id)
    rows: list[tuple[str, object]] = [
        ("subscription", license.license_id),
        ("type", license.license_type),
        ("user", f"{user} ({license.user_id})" if user else license.user_id),
        ("office", office),
        ("extension", license.ext_key or "—"),
        ("number", license.number or "—"),
        ("assigned", timestamp(license.create_time)),
        ("changed", timestamp(license.update_time)),
    ]
    out.fields(title, rows)
    out.table(
        "Add-ons",
        ["type", "subscription", "attached"],
        [(a.license_type, a.addon_id, timestamp(a.create_time)) for a in license.addons],
    )


def license_result(out: Output, session: Session, title: str, response: Any) -> None:
    """Prints a response that carries one license (JSON: the response as it is)."""
    out.result(response, lambda: show_license(out, session, title, response.license))


def returned_note(out: Output, unit_ids: list[str]) -> None:
    if unit_ids:
        out.console.print(f"{len(unit_ids)} unit(s) given back to the pool: " + ", ".join(unit_ids))


@app.command("assign")
def assign(
    ctx: typer.Context,
    user_id: UserArg,
    license_type: Annotated[
        str, typer.Argument(help="auto_attendant, call_group, developer or phone_system.")
    ],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Give a user a base license, allocated for the user's office."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.AssignLicenseResponse = provisioning.call(
        provisioning.stub.AssignLicense,
        provisioning_pb2.AssignLicenseRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            user_id=user_id,
            license_type=license_type,
        ),
    )
    license_result(out, session, "License assigned", response)


@app.command("unassign")
def unassign(
    ctx: typer.Context,
    license_id: LicenseId,
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Take a base license from its user; the unit and its add-ons go back to the pool."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.UnassignLicenseResponse = provisioning.call(
        provisioning.stub.UnassignLicense,
        provisioning_pb2.UnassignLicenseRequest(
            request_id=request_id(given_request_id), company_id=company, license_id=license_id
        ),
    )

    def show() -> None:
        out.console.print(f"License {license_id} unassigned.")
        returned_note(out, list(response.returned_unit_ids))

    out.result(response, show)


@app.command("reassign")
def reassign(
    ctx: typer.Context,
    license_id: LicenseId,
    user_id: Annotated[str, typer.Argument(help="The new user (UUID), in the same office.")],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Move a license, with its add-ons, extension and number, to another user."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.ReassignLicenseResponse = provisioning.call(
        provisioning.stub.ReassignLicense,
        provisioning_pb2.ReassignLicenseRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            license_id=license_id,
            user_id=user_id,
        ),
    )
    license_result(out, session, "License reassigned", response)


@app.command("show")
def show(
    ctx: typer.Context,
    license_id: LicenseId,
    company: Company,
    json_flag: Json = False,
) -> None:
    """Show a license: type, user, office, extension, number and its add-ons."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.GetLicenseResponse = provisioning.call(
        provisioning.stub.GetLicense,
        provisioning_pb2.GetLicenseRequest(company_id=company, license_id=license_id),
    )
    license_result(out, session, "License", response)


@app.command("search")
@paged
def search(
    ctx: typer.Context,
    company: Company,
    license_type: Annotated[str, typer.Option("--type", help="Only this base type.")] = "",
    user: Annotated[str, typer.Option("--user", help="Only this user's (UUID).")] = "",
    extension: Annotated[
        str, typer.Option("--extension", help="Only extension keys starting with this.")
    ] = "",
    number: Annotated[
        str, typer.Option("--number", help="Only the license with this number.")
    ] = "",
    office: Annotated[str, typer.Option("--office", help="Only this office's (UUID).")] = "",
    paging: Paging = FIRST_PAGE,
    json_flag: Json = False,
) -> None:
    """Search base licenses by type, user, extension or number, oldest first."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning

    found: Listed[provisioning_pb2.License] = listed(
        provisioning,
        provisioning.stub.SearchLicenses,
        provisioning_pb2.SearchLicensesRequest(
            company_id=company,
            office_id=office,
            license_type=license_type,
            user_id=user,
            ext_key=extension,
            number=number,
        ),
        "licenses",
        paging,
    )

    def show() -> None:
        users = user_names(session, company, {h.user_id for h in found.items})
        offices = OfficeNames.of(session.clients, company) if found.items else OfficeNames()
        out.table(
            "Licenses",
            ["type", "user", "office", "extension", "number", "add-ons", "subscription"],
            [
                (
                    h.license_type,
                    users.get(h.user_id) or h.user_id,
                    offices.label(h.office_id),
                    h.ext_key or "—",
                    h.number or "—",
                    addons_text(h),
                    h.license_id,
                )
                for h in found.items
            ],
        )

    out.listing("licenses", found, show)


@app.command("terminate")
def terminate(
    ctx: typer.Context,
    subscription_id: Annotated[
        str, typer.Argument(help="The subscription UUID of a base license or add-on unit.")
    ],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Terminate a subscription that is not in use: its unit becomes TERMINATED."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.TerminateLicenseResponse = provisioning.call(
        provisioning.stub.TerminateLicense,
        provisioning_pb2.TerminateLicenseRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            subscription_id=subscription_id,
        ),
    )
    unit = response.subscription
    names = OfficeNames.of(session.clients, company) if not out.json else OfficeNames()
    out.result(
        response,
        lambda: out.fields(
            "Subscription terminated",
            [
                ("subscription", unit.subscription_id),
                ("type", unit.license_type),
                ("office", names.label(unit.office_id)),
                ("state", unit.state),
            ],
        ),
    )
