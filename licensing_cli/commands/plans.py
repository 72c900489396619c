"""`licensing plan`: an office's plan in billing: its name, price book and cycle."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from google.protobuf.field_mask_pb2 import FieldMask

from licensing.billing.v1 import billing_pb2
from licensing_cli.commands.office import parse_prices
from licensing_cli.names import OfficeNames
from licensing_cli.options import (
    EVERY_PAGE,
    Company,
    CurrencyFilter,
    Json,
    RequestId,
    currency_code,
    request_id,
)
from licensing_cli.output import Output, enum_name, money_of, timestamp, to_dict
from licensing_cli.pages import Listed, listed
from licensing_cli.session import Session, session_of

app = typer.Typer(help="Plans (billing): names, price books, cycles.", no_args_is_help=True)

OfficeArg = Annotated[str, typer.Argument(help="The office (UUID) whose active plan it is.")]


def kind_name(value: int) -> str:
    return enum_name(value, billing_pb2.PlanKind.Name, "PLAN_KIND_")


def plans_of(
    session: Session, company: str, office: str = "", currency: str = "", active_only: bool = False
) -> list[billing_pb2.Plan]:
    """The company's plans, oldest first (billing orders them by start)."""
    billing = session.clients.billing
    found: Listed[billing_pb2.Plan] = listed(
        billing,
        billing.stub.ListPlans,
        billing_pb2.ListPlansRequest(
            company_id=company, office_id=office, currency=currency, active_only=active_only
        ),
        "plans",
        EVERY_PAGE,
    )
    return sorted(
        found.items, key=lambda p: (p.create_time.seconds, p.create_time.nanos, p.plan_id)
    )


def active_plan(session: Session, company: str, office: str) -> billing_pb2.Plan:
    found = plans_of(session, company, office=office, active_only=True)
    if not found:
        session.output().err.print(
            f"[red bold]error:[/red bold] office {office} has no active plan in billing; "
            "create the office with a plan (`licensing office create`)"
        )
        raise typer.Exit(2)
    return found[0]


def show_plan(out: Output, title: str, plan: billing_pb2.Plan, office: str) -> None:
    rows: list[tuple[str, object]] = [
        ("plan", plan.plan_id),
        ("name", plan.display_name or "—"),
        ("office", office),
        ("kind", kind_name(plan.kind)),
        ("currency", plan.currency),
        ("contracted", "yes" if plan.contracted else "no"),
        ("primary", "yes" if plan.primary else "no"),
        ("active", "yes" if plan.active else "no"),
        ("cycle anchor", timestamp(plan.start_time)),
    ]
    for price in plan.prices:
        rows.append((f"price {price.license_type}", money_of(price.unit_price)))
    if not plan.prices:
        rows.append(("prices", "(none: no type can be bought)"))
    out.fields(title, rows)


@app.command("list")
def list_plans(
    ctx: typer.Context,
    company: Company,
    currency: CurrencyFilter = "",
    active_only: Annotated[bool, typer.Option("--active", help="Only active plans.")] = False,
    json_flag: Json = False,
) -> None:
    """List the company's plans, oldest first, with their office's name."""
    session = session_of(ctx)
    out = session.output(json_flag)
    plans = plans_of(session, company, currency=currency_code(currency), active_only=active_only)

    def show() -> None:
        names = OfficeNames.of(session.clients, company)
        out.table(
            "Plans",
            ["name", "office", "kind", "currency", "active", "prices", "plan"],
            [
                (
                    p.display_name or "—",
                    names.label(p.office_id),
                    kind_name(p.kind),
                    p.currency,
                    "yes" if p.active else "no",
                    ", ".join(f"{x.license_type} {money_of(x.unit_price)}" for x in p.prices)
                    or "—",
                    p.plan_id,
                )
                for p in plans
            ],
        )

    out.result({"plans": [to_dict(p) for p in plans]}, show)


@app.command("show")
def show(
    ctx: typer.Context,
    office: OfficeArg,
    company: Company,
    json_flag: Json = False,
) -> None:
    """Show an office's active plan: name, kind, cycle anchor and price book."""
    session = session_of(ctx)
    out = session.output(json_flag)
    plan = active_plan(session, company, office)
    label = OfficeNames.of(session.clients, company).label(office) if not out.json else office
    out.result({"plan": to_dict(plan)}, lambda: show_plan(out, "Plan", plan, label))


def _update(
    session: Session, plan: billing_pb2.Plan, changes: billing_pb2.Plan, path: str, rid: str
) -> billing_pb2.Plan:
    changes.plan_id, changes.company_id = plan.plan_id, plan.company_id
    billing = session.clients.billing
    response: billing_pb2.UpdatePlanResponse = billing.call(
        billing.stub.UpdatePlan,
        billing_pb2.UpdatePlanRequest(
            request_id=rid, plan=changes, update_mask=FieldMask(paths=[path])
        ),
    )
    return response.plan


@app.command("set-price")
def set_price(
    ctx: typer.Context,
    office: OfficeArg,
    prices: Annotated[
        list[str],
        typer.Argument(help="TYPE=AMOUNT: unit price per cycle in minor units, e.g. sell=2500."),
    ],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Set the price of license types on the office's active plan (others are kept).

    A type without a price cannot be bought; in a pooled currency every active plan must
    price a type the same, or purchases of it fail PRICING_MISMATCH.
    """
    session = session_of(ctx)
    out = session.output(json_flag)
    plan = active_plan(session, company, office)
    book: dict[str, Any] = {p.license_type: p for p in plan.prices}
    for price in parse_prices(prices, plan.currency):
        book[price.license_type] = price
    changes = billing_pb2.Plan(prices=[book[code] for code in sorted(book)])
    updated = _update(session, plan, changes, "prices", request_id(given_request_id))
    out.result({"plan": to_dict(updated)}, lambda: show_plan(out, "Prices set", updated, office))


@app.command("rename")
def rename(
    ctx: typer.Context,
    office: OfficeArg,
    name: Annotated[str, typer.Argument(help="The plan's new name.")],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Give the office's active plan another name."""
    session = session_of(ctx)
    out = session.output(json_flag)
    plan = active_plan(session, company, office)
    changes = billing_pb2.Plan(display_name=name)
    updated = _update(session, plan, changes, "display_name", request_id(given_request_id))
    out.result({"plan": to_dict(updated)}, lambda: show_plan(out, "Plan renamed", updated, office))
