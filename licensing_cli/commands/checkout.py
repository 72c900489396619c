"""`licensing checkout`: quote ("X from pool"), purchase, schedule removal."""

from __future__ import annotations

from typing import Annotated

import typer

from licensing.billing.v1 import billing_pb2
from licensing_cli.names import OfficeNames
from licensing_cli.options import Company, Json, RequestId, request_id
from licensing_cli.output import money_of, timestamp
from licensing_cli.session import session_of

app = typer.Typer(help="Buy and remove licenses (billing).", no_args_is_help=True)

Office = Annotated[str, typer.Argument(help="The office buying (UUID).")]
LicenseType = Annotated[str, typer.Argument(help="License type code, e.g. connect.")]
Quantity = Annotated[int, typer.Argument(min=1, max=10000, help="How many licenses.")]


@app.command("quote")
def quote(
    ctx: typer.Context,
    office: Office,
    license_type: LicenseType,
    quantity: Quantity,
    company: Company,
    hold: Annotated[
        bool,
        typer.Option("--hold", help="Hold the pool units briefly; purchase with --quote-id."),
    ] = False,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Preview a purchase: restored, from the pool (free), new (prorated charge)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    billing = session.clients.billing
    response: billing_pb2.QuoteLicensePurchaseResponse = billing.call(
        billing.stub.QuoteLicensePurchase,
        billing_pb2.QuoteLicensePurchaseRequest(
            request_id=request_id(given_request_id) if hold or given_request_id else "",
            company_id=company,
            office_id=office,
            license_type=license_type,
            quantity=quantity,
            hold=hold,
        ),
    )
    q = response.quote

    def show() -> None:
        out.console.print(f"[bold]{q.message}[/bold]")
        pairs: list[tuple[str, object]] = [
            ("license type", q.license_type),
            ("quantity", q.quantity),
            ("restored (free)", q.restored),
            ("from pool (free)", q.from_pool),
            ("new (charged)", q.new_units),
            ("unit price / cycle", money_of(q.unit_price)),
            ("prorated amount", money_of(q.amount)),
            ("cycle", f"{timestamp(q.cycle_start_time)} → {timestamp(q.cycle_end_time)}"),
            ("plan", q.plan_id),
        ]
        if q.quote_id:
            pairs.append(("quote id", q.quote_id))
            pairs.append(("held until", timestamp(q.expire_time)))
        out.fields("Quote", pairs)
        if q.quote_id:
            out.note(f"Buy exactly this: licensing checkout purchase --quote-id {q.quote_id}")

    out.result(response, show)


@app.command("purchase")
def purchase(
    ctx: typer.Context,
    company: Company,
    office: Annotated[str | None, typer.Argument(help="The office buying (UUID).")] = None,
    license_type: Annotated[str | None, typer.Argument(help="License type code.")] = None,
    quantity: Annotated[int | None, typer.Argument(min=1, max=10000, help="How many.")] = None,
    quote_id: Annotated[str, typer.Option("--quote-id", help="Buy a held quote exactly.")] = "",
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Buy licenses: restore scheduled removals, take from the pool, create the rest."""
    if not quote_id and (office is None or license_type is None or quantity is None):
        raise typer.BadParameter("give OFFICE TYPE QUANTITY, or --quote-id")
    session = session_of(ctx)
    out = session.output(json_flag)
    billing = session.clients.billing
    response: billing_pb2.PurchaseLicensesResponse = billing.call(
        billing.stub.PurchaseLicenses,
        billing_pb2.PurchaseLicensesRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            office_id=office or "",
            license_type=license_type or "",
            quantity=quantity or 0,
            quote_id=quote_id,
        ),
    )
    p = response.purchase

    def show() -> None:
        out.console.print(f"[bold green]Purchased:[/bold green] {p.message}")
        out.fields(
            f"Purchase {p.purchase_id}",
            [
                ("office", OfficeNames.of(session.clients, company).label(p.office_id)),
                ("license type", p.license_type),
                ("quantity", p.quantity),
                ("restored / from pool / new", f"{p.restored} / {p.from_pool} / {p.new_units}"),
                ("charged (prorated)", money_of(p.amount)),
                ("unit price / cycle", money_of(p.unit_price)),
                ("period", p.period),
                ("units", len(p.unit_ids)),
            ],
        )

    out.result(response, show)


@app.command("remove")
def remove(
    ctx: typer.Context,
    office: Office,
    license_type: LicenseType,
    quantity: Quantity,
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Schedule spare licenses for removal at the end of the cycle."""
    session = session_of(ctx)
    out = session.output(json_flag)
    billing = session.clients.billing
    response: billing_pb2.ScheduleRemovalResponse = billing.call(
        billing.stub.ScheduleRemoval,
        billing_pb2.ScheduleRemovalRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            office_id=office,
            license_type=license_type,
            quantity=quantity,
        ),
    )
    out.result(
        response,
        lambda: out.console.print(
            f"{len(response.unit_ids)} {license_type} license(s) scheduled for removal at "
            f"{timestamp(response.removal_time)}."
        ),
    )
