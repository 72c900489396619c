"""`licensing company`: a new company id, and everything the services know about one."""

from __future__ import annotations

import uuid
from typing import Any

import typer

from licensing.billing.v1 import billing_pb2
from licensing.pool.v1 import pool_pb2
from licensing_cli.discovery import health_of
from licensing_cli.names import offices_of
from licensing_cli.options import EVERY_PAGE, Company, Json
from licensing_cli.output import enum_name, money_of, timestamp, to_dict
from licensing_cli.pages import listed
from licensing_cli.session import session_of

app = typer.Typer(help="Start a company and look at it as a whole.", no_args_is_help=True)


@app.command("new")
def new(ctx: typer.Context, json_flag: Json = False) -> None:
    """Print a new company id (companies exist through their offices)."""
    out = session_of(ctx).output(json_flag)
    company = str(uuid.uuid4())

    def show() -> None:
        out.console.print(company)
        out.err.print(f"[dim]export LICENSING_COMPANY={company}[/dim]")  # stdout: the id alone

    out.result({"company_id": company}, show)


@app.command("show")
def show_company(ctx: typer.Context, company: Company, json_flag: Json = False) -> None:
    """Offices, their plans (when billing answers) and the pool of each currency."""
    session = session_of(ctx)
    out = session.output(json_flag)
    pool = session.clients.pool
    offices = offices_of(session.clients, company)
    pools: list[pool_pb2.GetPoolResponse] = [
        pool.call(pool.stub.GetPool, pool_pb2.GetPoolRequest(company_id=company, currency=c))
        for c in sorted({o.currency for o in offices})
    ]
    plans: list[billing_pb2.Plan] = []
    billing_up = health_of(session.clients.channel("billing")) == "SERVING"
    if billing_up:
        billing = session.clients.billing
        plans = listed(
            billing,
            billing.stub.ListPlans,
            billing_pb2.ListPlansRequest(company_id=company, active_only=True),
            "plans",
            EVERY_PAGE,
        ).items
    plan_of = {p.office_id: p for p in plans}
    result: dict[str, Any] = {
        "company_id": company,
        "offices": [to_dict(o) for o in offices],
        "pools": [to_dict(p) for p in pools],
        "plans": [to_dict(p) for p in plans] if billing_up else None,
    }

    def show() -> None:
        rows = []
        for o in offices:
            found = plan_of.get(o.office_id)
            prices = ", ".join(
                f"{p.license_type} {money_of(p.unit_price)}"
                for p in (found.prices if found else [])
            )
            rows.append(
                (
                    o.display_name or "—",
                    o.office_id,
                    o.currency,
                    enum_name(o.plan_kind, pool_pb2.PlanKind.Name, "PLAN_KIND_"),
                    "yes" if o.primary else "",
                    (found.display_name or found.plan_id)
                    if found
                    else ("—" if billing_up else "(billing down)"),
                    prices,
                )
            )
        out.table(
            f"Company {company}",
            ["name", "office", "currency", "plan kind", "primary", "plan", "prices"],
            rows,
            empty="no offices yet (`licensing office create`)",
        )
        out.table(
            "Pools",
            ["currency", "enabled", "since", "pooled types"],
            [
                (
                    p.pool.currency,
                    "yes" if p.pool.enabled else "no",
                    timestamp(p.pool.enable_time),
                    ", ".join(
                        f"{c.license_type} {c.claimable}+{c.in_grace} in grace" for c in p.contents
                    ),
                )
                for p in pools
            ],
        )

    out.result(result, show)
