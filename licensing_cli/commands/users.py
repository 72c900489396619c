"""`licensing user`: create and delete users, change their license (provisioning)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from licensing.pool.v1 import pool_pb2
from licensing.provisioning.v1 import provisioning_pb2
from licensing_cli.clients import hinted
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
from licensing_cli.output import timestamp
from licensing_cli.pages import Listed, listed
from licensing_cli.session import Session, session_of

app = typer.Typer(help="Users and their user licenses (provisioning).", no_args_is_help=True)

UserId = Annotated[str, typer.Argument(help="The user (UUID).")]


def _user_fields(user: provisioning_pb2.User) -> list[tuple[str, object]]:
    return [
        ("user", user.user_id),
        ("name", user.display_name),
        ("e-mail", user.email or "—"),
        ("office", user.office_id),
        ("license", user.license_type),
        ("license unit", user.license_unit_id),
        ("created", timestamp(user.create_time)),
    ]


@app.command("create")
def create(
    ctx: typer.Context,
    office: Annotated[str, typer.Argument(help="The user's office (UUID).")],
    name: Annotated[str, typer.Argument(help="Display name.")],
    company: Company,
    license_type: Annotated[
        str, typer.Option("--license", help="User license type, e.g. connect, sell, support.")
    ] = "connect",
    email: Annotated[str, typer.Option("--email", help="E-mail (unique in the company).")] = "",
    purchase: Annotated[
        bool,
        typer.Option("--purchase", help="Buy the license through billing when none is free."),
    ] = False,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Create a user; their license comes from own spare, own returns, then the pool."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    if purchase:
        none_left = (
            "no license is free for this office and none could be bought through billing: "
            "is billing reachable, and does the office's plan price this type "
            "(`licensing plan show`, `licensing plan set-price`)?"
        )
    else:
        none_left = (
            "no license is free for this office: none spare, none of its own returns in "
            "grace, none claimable in the company pool; add --purchase to buy it through "
            "billing, or free one"
        )
    request = provisioning_pb2.CreateUserRequest(
        request_id=request_id(given_request_id),
        company_id=company,
        office_id=office,
        display_name=name,
        email=email,
        license_type=license_type,
        purchase_if_needed=purchase,
    )
    with hinted(NO_LICENSE_AVAILABLE=none_left):
        response: provisioning_pb2.CreateUserResponse = provisioning.call(
            provisioning.stub.CreateUser, request
        )

    def show() -> None:
        pairs = _user_fields(response.user)
        pairs.append(("license from", _source_text(session, company, office, response)))
        out.fields("User created", pairs)

    out.result(response, show)


def _source_text(
    session: Session, company: str, office: str, response: provisioning_pb2.CreateUserResponse
) -> str:
    source = response.license_source
    if source == provisioning_pb2.LICENSE_SOURCE_POOL:
        pool = session.clients.pool
        found: pool_pb2.GetOfficeResponse = pool.call(
            pool.stub.GetOffice, pool_pb2.GetOfficeRequest(company_id=company, office_id=office)
        )
        return f"the company's {found.office.currency} pool (another office's return)"
    return SOURCES.get(source, "(the pool did not say)")


SOURCES = {
    provisioning_pb2.LICENSE_SOURCE_OWN_SPARE: "the office's own spare license",
    provisioning_pb2.LICENSE_SOURCE_OWN_RETURN_IN_GRACE: (
        "the office's own return, taken back within its grace period"
    ),
    provisioning_pb2.LICENSE_SOURCE_PURCHASED: "bought through billing for this user",
}


def where_it_went(unit: provisioning_pb2.ReturnedUnit, now: datetime | None = None) -> str:
    """`connect 6f1d8e5a… returned to the USD pool; other offices can claim it from
    12:30:00 UTC`, or kept as a spare of the office."""
    head = f"{unit.license_type} {unit.unit_id}"
    if unit.state == "POOLED":
        text = f"{head} returned to the {unit.currency} pool"
        if unit.HasField("claimable_time"):
            at = unit.claimable_time.ToDatetime(tzinfo=UTC)
            today = (now or datetime.now(UTC)).date() == at.date()
            text += "; other offices can claim it from " + at.strftime(
                "%H:%M:%S UTC" if today else "%Y-%m-%d %H:%M:%S UTC"
            )
        return text
    if unit.state == "SPARE":
        return f"{head} kept as a spare license of the office"
    return f"{head} is now {unit.state or 'back in the pool'}"


@app.command("delete")
def delete(
    ctx: typer.Context,
    user_id: UserId,
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Delete a user; their licenses go back (to the pool when pooled)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.DeleteUserResponse = provisioning.call(
        provisioning.stub.DeleteUser,
        provisioning_pb2.DeleteUserRequest(
            request_id=request_id(given_request_id), company_id=company, user_id=user_id
        ),
    )

    def show() -> None:
        out.console.print(f"User {user_id} deleted.")
        for unit in response.returned_units:
            out.console.print(f"  {where_it_went(unit)}")

    out.result(response, show)


@app.command("change-license")
def change_license(
    ctx: typer.Context,
    user_id: UserId,
    license_type: Annotated[str, typer.Argument(help="The new user license type.")],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Give a user another user license type; the old unit is returned."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.ChangeUserLicenseResponse = provisioning.call(
        provisioning.stub.ChangeUserLicense,
        provisioning_pb2.ChangeUserLicenseRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            user_id=user_id,
            license_type=license_type,
        ),
    )

    def show() -> None:
        pairs = _user_fields(response.user)
        pairs.append(("returned unit", response.returned_unit_id or "(type unchanged)"))
        out.fields("License changed", pairs)

    out.result(response, show)


@app.command("list")
@paged
def list_users(
    ctx: typer.Context,
    company: Company,
    office: Annotated[str, typer.Option("--office", help="Only this office's users.")] = "",
    query: Annotated[str, typer.Option("--query", help="Name or e-mail contains.")] = "",
    paging: Paging = FIRST_PAGE,
    json_flag: Json = False,
) -> None:
    """List users, oldest first."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning

    found: Listed[provisioning_pb2.User] = listed(
        provisioning,
        provisioning.stub.ListUsers,
        provisioning_pb2.ListUsersRequest(
            company_id=company,
            office_id=office,
            query=query,
        ),
        "users",
        paging,
    )

    def show() -> None:
        offices = OfficeNames.of(session.clients, company) if found.items else OfficeNames()
        out.table(
            "Users",
            ["name", "e-mail", "office", "license", "user"],
            [
                (u.display_name, u.email, offices.label(u.office_id), u.license_type, u.user_id)
                for u in found.items
            ],
        )

    out.listing("users", found, show)
