"""`licensing office`: register a company's offices in every service, with their plans."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from licensing.billing.v1 import billing_pb2
from licensing.credits.v1 import credits_pb2
from licensing.pool.v1 import pool_pb2
from licensing_cli.discovery import health_of
from licensing_cli.names import offices_of
from licensing_cli.options import (
    Company,
    CurrencyFilter,
    Json,
    RequestId,
    currency_code,
    derived,
    request_id,
    uuid_text,
)
from licensing_cli.output import enum_name, money, money_of, timestamp, to_dict
from licensing_cli.session import Session, session_of

app = typer.Typer(help="Create and list the offices of a company.", no_args_is_help=True)

OFFICE_IDS = uuid.UUID("6f1d8e5a-3c0b-4f5e-9a57-0c8d2b1e7a44")  # namespace of derived office ids


def parse_prices(values: list[str], currency: str) -> list[billing_pb2.Price]:
    """`connect=1500` (minor units) -> a Price."""
    prices = []
    for value in values:
        code, sep, amount = value.partition("=")
        if not sep or not code.strip() or not amount.strip().isdigit():
            raise typer.BadParameter(
                f"{value!r}: expected TYPE=AMOUNT in minor units, e.g. connect=1500",
                param_hint="--price",
            )
        prices.append(
            billing_pb2.Price(
                license_type=code.strip(),
                unit_price=billing_pb2.Money(currency_code=currency, amount_minor=int(amount)),
            )
        )
    return prices


def parse_time(value: str | None, what: str) -> Timestamp | None:
    """An ISO 8601 instant (UTC when no offset is given)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=what) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(parsed.astimezone(UTC))
    return stamp


def _wanted(session: Session, name: str, flag: bool | None) -> bool:
    """Whether to call an optional service: as told, or when it answers health checks."""
    if flag is not None:
        return flag
    return health_of(session.clients.channel(name)) == "SERVING"


@app.command("create")
def create(
    ctx: typer.Context,
    company: Company,
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 billing currency.")],
    name: Annotated[
        str, typer.Option("--name", help="The office's name, e.g. Tokyo (shown in tables).")
    ] = "",
    plan_name: Annotated[
        str | None, typer.Option("--plan-name", help="The plan's name (default: the office's).")
    ] = None,
    office_id: Annotated[
        str | None, typer.Option("--office-id", help="The office's UUID (default: a new one).")
    ] = None,
    legacy: Annotated[
        bool, typer.Option("--legacy", help="A legacy plan (bundle plans are the default).")
    ] = False,
    primary: Annotated[
        bool, typer.Option("--primary", help="The company's primary office.")
    ] = False,
    price: Annotated[
        list[str] | None,
        typer.Option(
            "--price", help="TYPE=AMOUNT: unit price per cycle in minor units; repeatable."
        ),
    ] = None,
    contracted: Annotated[
        bool, typer.Option("--contracted", help="An invoiced contract plan.")
    ] = False,
    start: Annotated[
        str | None,
        typer.Option("--start", help="Plan start (ISO 8601, UTC); anchors the cycle."),
    ] = None,
    allowance: Annotated[
        int,
        typer.Option(
            "--allowance",
            min=0,
            help="Included usage credits per period (minor units), on the plan: billing keeps"
            " the credit account's allowance equal to it.",
        ),
    ] = 0,
    reject_overage: Annotated[
        bool,
        typer.Option("--reject-overage", help="Refuse usage the credits do not cover."),
    ] = False,
    plan: Annotated[
        bool | None,
        typer.Option(
            "--plan/--no-plan",
            help="Create the plan in billing (default: when billing answers).",
            show_default=False,
        ),
    ] = None,
    credits: Annotated[
        bool | None,
        typer.Option(
            "--credits/--no-credits",
            help="Open the credit account (default: when credits answers).",
            show_default=False,
        ),
    ] = None,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Create an office: pool PutOffice, billing CreatePlan, credits PutAccount."""
    session = session_of(ctx)
    out = session.output(json_flag)
    clients = session.clients
    code = currency_code(currency)
    base = request_id(given_request_id)
    # Derived from the request id, so that re-running with --request-id names the same office.
    office = (
        uuid_text(office_id, "--office-id")
        if office_id
        else str(uuid.uuid5(OFFICE_IDS, f"{company}/{base}"))
    )
    prices = parse_prices(price or [], code)
    started = parse_time(start, "--start")
    kind = pool_pb2.PLAN_KIND_LEGACY if legacy else pool_pb2.PLAN_KIND_BUNDLE
    facts = pool_pb2.Office(
        company_id=company,
        office_id=office,
        currency=code,
        plan_kind=kind,
        primary=primary,
        display_name=name,
    )
    pool = clients.pool
    put: pool_pb2.PutOfficeResponse = pool.call(
        pool.stub.PutOffice,
        pool_pb2.PutOfficeRequest(request_id=derived(base, "pool"), office=facts),
    )
    result: dict[str, Any] = {"request_id": base, "office": to_dict(put.office)}

    created_plan: billing_pb2.Plan | None = None
    if _wanted(session, "billing", plan):
        billing = clients.billing
        new_plan = billing_pb2.Plan(
            company_id=company,
            office_id=office,
            kind=billing_pb2.PLAN_KIND_LEGACY if legacy else billing_pb2.PLAN_KIND_BUNDLE,
            currency=code,
            prices=prices,
            contracted=contracted,
            primary=primary,
            display_name=name if plan_name is None else plan_name,
            credit_allowance_minor=allowance,
        )
        if started is not None:
            new_plan.start_time.CopyFrom(started)
        response: billing_pb2.CreatePlanResponse = billing.call(
            billing.stub.CreatePlan,
            billing_pb2.CreatePlanRequest(request_id=derived(base, "billing"), plan=new_plan),
        )
        created_plan = response.plan
        result["plan"] = to_dict(created_plan)
    elif prices:
        out.warn(f"billing is not reachable at {clients.addresses['billing']}: no plan created")

    account: credits_pb2.Account | None = None
    if _wanted(session, "credits", credits):
        credits_ep = clients.credits
        new_account = credits_pb2.Account(
            company_id=company,
            office_id=office,
            currency=code,
            primary=primary,
            allowance_minor=allowance,
            overage_policy=(
                credits_pb2.OVERAGE_POLICY_REJECT
                if reject_overage
                else credits_pb2.OVERAGE_POLICY_ALLOW
            ),
        )
        anchor = created_plan.start_time if created_plan is not None else started
        if anchor is not None:
            new_account.period_anchor_time.CopyFrom(anchor)
        account_request = credits_pb2.PutAccountRequest(
            request_id=derived(base, "credits"), account=new_account
        )
        if created_plan is not None:
            # Billing keeps the rest of the account in step with the plan; the overage
            # policy is the operator's (the whole account, if billing has none yet).
            account_request.update_mask.paths.append("overage_policy")
        put_account: credits_pb2.PutAccountResponse = credits_ep.call(
            credits_ep.stub.PutAccount, account_request
        )
        account = put_account.account
        result["account"] = to_dict(account)

    def show() -> None:
        rows: list[tuple[str, str]] = [
            ("office", office),
            ("name", name or "—"),
            ("company", company),
            ("currency", code),
            ("plan kind", "LEGACY" if legacy else "BUNDLE"),
            ("primary", "yes" if primary else "no"),
        ]
        if created_plan is not None:
            rows.append(("plan", created_plan.plan_id))
            rows.append(("plan name", created_plan.display_name or "—"))
            rows.append(("cycle anchor", timestamp(created_plan.start_time)))
            for item in created_plan.prices:
                rows.append((f"price {item.license_type}", money_of(item.unit_price)))
        else:
            rows.append(("plan", "(none: billing not used)"))
        if account is not None:
            rows.append(("allowance / period", money(account.allowance_minor, code)))
        else:
            rows.append(("credit account", "(none: credits not used)"))
        rows.append(("request id", base))
        out.fields("Office created", rows)

    out.result(result, show)


@app.command("list")
def list_offices(
    ctx: typer.Context,
    company: Company,
    currency: CurrencyFilter = "",
    json_flag: Json = False,
) -> None:
    """List the company's offices (from the pool service), oldest first."""
    session = session_of(ctx)
    out = session.output(json_flag)
    offices = offices_of(session.clients, company, currency_code(currency))

    def show() -> None:
        out.table(
            "Offices",
            ["name", "office", "currency", "plan kind", "primary"],
            [
                (
                    o.display_name or "—",
                    o.office_id,
                    o.currency,
                    enum_name(o.plan_kind, pool_pb2.PlanKind.Name, "PLAN_KIND_"),
                    "yes" if o.primary else "",
                )
                for o in offices
            ],
        )

    out.result({"offices": [to_dict(o) for o in offices]}, show)
