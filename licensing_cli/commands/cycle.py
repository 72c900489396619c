"""`licensing cycle`: close a billing period and print its invoice."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from licensing.billing.v1 import billing_pb2
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
from licensing_cli.output import Output, enum_name, money_of, timestamp
from licensing_cli.pages import Listed, listed
from licensing_cli.session import session_of

app = typer.Typer(help="Close billing periods and read invoices.", no_args_is_help=True)

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def last_month(now: datetime) -> str:
    """The period before `now`'s month: the latest one that may have ended."""
    first = now.replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def show_invoice(out: Output, invoice: billing_pb2.Invoice, names: OfficeNames) -> None:
    """The invoice as tables (offices by name): unit lines (unpriced ones flagged),
    purchase charges (those billed in advance flagged), credit overage, totals,
    reconciliation."""
    out.console.print(
        f"[bold]Invoice {invoice.invoice_id}[/bold] — period {invoice.period}, "
        f"snapshot {timestamp(invoice.snapshot_time)}"
    )
    out.table(
        "Licenses",
        [
            "office",
            "type",
            "billed as",
            "assigned",
            "spare",
            "removal",
            "held",
            "pooled",
            "units",
            "unit price",
            "amount",
        ],
        [
            (
                names.label(line.office_id),
                line.license_type,
                enum_name(line.kind, billing_pb2.LineKind.Name, "LINE_KIND_")
                .replace("_UNITS", "")
                .lower(),
                line.assigned,
                line.spare,
                line.removal_scheduled,
                line.held,
                line.pooled,
                line.units,
                "UNPRICED" if line.unpriced else money_of(line.unit_price),
                money_of(line.amount),
            )
            for line in invoice.lines
        ],
    )
    out.table(
        "Purchases this period (prorated)",
        ["purchase", "office", "type", "period", "#new", "billed", "adjustment", "amount", "when"],
        [
            (
                c.purchase_id,
                names.label(c.office_id),
                c.license_type,
                c.period,
                c.new_units,
                "IN ADVANCE" if c.billed_in_advance else "",
                money_of(c.adjustment) if c.billed_in_advance else "",
                money_of(c.amount),
                timestamp(c.purchase_time),
            )
            for c in invoice.purchase_charges
        ],
    )
    if any(c.billed_in_advance for c in invoice.purchase_charges):
        out.note(
            "IN ADVANCE: bought in the office's next cycle before this close. The lines bill"
            " its new units that whole cycle; the adjustment credits the part before the"
            " purchase (line + charge = the prorated amount), and no later invoice bills it."
        )
    if invoice.credit_overage_included:
        out.table(
            "Credit overage",
            ["office", "plan", "credit period", "amount"],
            [
                (
                    names.label(o.office_id),
                    o.plan_id or "(none)",
                    f"{timestamp(o.period_start_time)} to {timestamp(o.period_end_time)}",
                    money_of(o.amount),
                )
                for o in invoice.credit_overages
            ],
        )
    else:
        out.note("Credit overage is not on this invoice: billing did not read it from credits.")
    out.table(
        "Totals", ["currency", "total"], [(t.currency_code, money_of(t)) for t in invoice.totals]
    )
    r = invoice.reconciliation
    mark = (
        "[green]✓ every live unit billed exactly once[/green]"
        if r.balanced
        else "[red]✗ NOT BALANCED[/red]"
    )
    out.console.print(f"{r.live_units} live units, {r.billed_units} billed: {mark}")
    if r.unpriced_units:
        out.console.print(
            f"[yellow]! {r.unpriced_units} unit(s) on UNPRICED lines, billed at 0: their plan"
            " has no price for the type (set one: UpdatePlan)[/yellow]"
        )
    if invoice.terminated_units:
        out.console.print(
            f"{invoice.terminated_units} license(s) scheduled for removal terminated."
        )


@app.command("close")
def close(
    ctx: typer.Context,
    company: Company,
    period: Annotated[
        str | None,
        typer.Argument(
            help="YYYY-MM (default: the last month, UTC). A period closes once it has ended"
            " for every office (each office's cycle that starts in it is over)."
        ),
    ] = None,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Close a period: one invoice from one pool snapshot; closing twice gives the same."""
    chosen = period or last_month(datetime.now(UTC))
    if not PERIOD.match(chosen):
        raise typer.BadParameter(f"{chosen!r}: expected YYYY-MM", param_hint="PERIOD")
    session = session_of(ctx)
    out = session.output(json_flag)
    billing = session.clients.billing
    response: billing_pb2.CloseCycleResponse = billing.call(
        billing.stub.CloseCycle,
        billing_pb2.CloseCycleRequest(
            request_id=request_id(given_request_id), company_id=company, period=chosen
        ),
    )
    out.result(
        response,
        lambda: show_invoice(out, response.invoice, OfficeNames.of(session.clients, company)),
    )


@app.command("invoice")
def invoice(
    ctx: typer.Context,
    invoice_id: Annotated[str, typer.Argument(help="The invoice (UUID).")],
    company: Company,
    json_flag: Json = False,
) -> None:
    """Print one invoice."""
    session = session_of(ctx)
    out = session.output(json_flag)
    billing = session.clients.billing
    response: billing_pb2.GetInvoiceResponse = billing.call(
        billing.stub.GetInvoice,
        billing_pb2.GetInvoiceRequest(company_id=company, invoice_id=invoice_id),
    )
    out.result(
        response,
        lambda: show_invoice(out, response.invoice, OfficeNames.of(session.clients, company)),
    )


@app.command("invoices")
@paged
def invoices(
    ctx: typer.Context,
    company: Company,
    paging: Paging = FIRST_PAGE,
    json_flag: Json = False,
) -> None:
    """List invoices, newest period first."""
    session = session_of(ctx)
    out = session.output(json_flag)
    billing = session.clients.billing

    found: Listed[billing_pb2.Invoice] = listed(
        billing,
        billing.stub.ListInvoices,
        billing_pb2.ListInvoicesRequest(
            company_id=company,
        ),
        "invoices",
        paging,
    )

    def show() -> None:
        out.table(
            "Invoices",
            ["invoice", "period", "totals", "balanced", "unpriced units"],
            [
                (
                    i.invoice_id,
                    i.period,
                    ", ".join(money_of(t) for t in i.totals),
                    "yes" if i.reconciliation.balanced else "NO",
                    i.reconciliation.unpriced_units or "",
                )
                for i in found.items
            ],
        )

    out.listing("invoices", found, show)
