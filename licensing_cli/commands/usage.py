"""`licensing usage`: record usage, credit pooling and grants, balances and totals."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from licensing.credits.v1 import credits_pb2
from licensing_cli.commands.office import parse_time
from licensing_cli.options import (
    FIRST_PAGE,
    Company,
    CurrencyFilter,
    Json,
    Paging,
    RequestId,
    currency_code,
    paged,
    request_id,
)
from licensing_cli.output import enum_name, money, timestamp
from licensing_cli.pages import Listed, listed
from licensing_cli.session import session_of

app = typer.Typer(help="Usage credits (credits service).", no_args_is_help=True)


class Kind(StrEnum):
    """What a usage is for."""

    calling = "calling"
    messaging = "messaging"
    fax = "fax"
    ai_agent = "ai_agent"


class Target(StrEnum):
    """Where granted credits go."""

    company_pool = "company_pool"
    office_balance = "office_balance"
    ai_agent_credits = "ai_agent_credits"


def kind_value(kind: Kind | None) -> credits_pb2.UsageKind.ValueType:
    if kind is None:
        return credits_pb2.USAGE_KIND_UNSPECIFIED
    return credits_pb2.UsageKind.Value(f"USAGE_KIND_{kind.value.upper()}")


def kind_name(value: int) -> str:
    return enum_name(value, credits_pb2.UsageKind.Name, "USAGE_KIND_").lower()


def split_text(split: credits_pb2.UsageSplit, currency: str) -> str:
    parts = [
        ("allowance", split.allowance_minor),
        ("own balance", split.office_balance_minor),
        ("company pool", split.company_pool_minor),
        ("AI agent credits", split.ai_agent_credits_minor),
        ("overage", split.overage_minor),
    ]
    return ", ".join(f"{name} {money(v, currency)}" for name, v in parts if v) or "nothing"


@app.command("record")
def record(
    ctx: typer.Context,
    office: Annotated[str, typer.Argument(help="The office that used the service (UUID).")],
    amount: Annotated[
        int, typer.Argument(min=1, help="Amount in minor units of the office's currency.")
    ],
    company: Company,
    kind: Annotated[Kind, typer.Option("--kind", case_sensitive=False)] = Kind.calling,
    currency: Annotated[
        str, typer.Option("--currency", help="Must be the office's currency when given.")
    ] = "",
    at: Annotated[
        str | None, typer.Option("--at", help="When it happened (ISO 8601; default now).")
    ] = None,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Record a usage: allowance first, then the shared or own balance, then overage."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    request = credits_pb2.RecordUsageRequest(
        request_id=request_id(given_request_id),
        company_id=company,
        office_id=office,
        kind=kind_value(kind),
        amount_minor=amount,
        currency=currency_code(currency),
    )
    occurred = parse_time(at, "--at")
    if occurred is not None:
        request.occur_time.CopyFrom(occurred)
    response: credits_pb2.RecordUsageResponse = credits.call(credits.stub.RecordUsage, request)
    u = response.usage

    def show() -> None:
        out.console.print(
            f"Recorded {money(u.amount_minor, u.currency)} of {kind_name(u.kind)} for office "
            f"{u.office_id}: {split_text(u.split, u.currency)}"
        )
        out.note(f"[dim]usage {u.usage_id}, request id {u.request_id}[/dim]")

    out.result(response, show)


@app.command("balances")
def balances(
    ctx: typer.Context,
    company: Company,
    currency: CurrencyFilter = "",
    json_flag: Json = False,
) -> None:
    """Shared company balances and, per office, allowance left, balances, overage."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    response: credits_pb2.GetBalancesResponse = credits.call(
        credits.stub.GetBalances,
        credits_pb2.GetBalancesRequest(company_id=company, currency=currency_code(currency)),
    )

    def show() -> None:
        out.table(
            f"Company credit pools (as of {timestamp(response.balance_time)})",
            ["currency", "pooling", "balance"],
            [
                (
                    p.currency,
                    "on" if p.pooling_enabled else "off",
                    money(p.balance_minor, p.currency),
                )
                for p in response.company_pools
            ],
        )
        out.table(
            "Offices",
            [
                "office",
                "primary",
                "allowance",
                "allowance left",
                "balance",
                "AI agent",
                "consumed",
                "overage",
            ],
            [
                (
                    o.office_id,
                    "yes" if o.primary else "",
                    money(o.allowance_minor, o.currency),
                    money(o.allowance_remaining_minor, o.currency),
                    money(o.balance_minor, o.currency),
                    money(o.ai_agent_credits_minor, o.currency),
                    money(o.consumed_minor, o.currency),
                    money(o.overage_minor, o.currency),
                )
                for o in response.offices
            ],
        )

    out.result(response, show)


@app.command("totals")
def totals(
    ctx: typer.Context,
    company: Company,
    currency: CurrencyFilter = "",
    kind: Annotated[Kind | None, typer.Option("--kind", case_sensitive=False)] = None,
    json_flag: Json = False,
) -> None:
    """Usage totals per office; they add up to the company total of each currency."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    response: credits_pb2.GetUsageTotalsResponse = credits.call(
        credits.stub.GetUsageTotals,
        credits_pb2.GetUsageTotalsRequest(
            company_id=company, currency=currency_code(currency), kind=kind_value(kind)
        ),
    )

    def rows(items: Any) -> list[tuple[object, ...]]:
        return [
            (
                t.office_id or "(company)",
                t.currency,
                t.record_count,
                money(t.amount_minor, t.currency),
                split_text(t.split, t.currency),
            )
            for t in items
        ]

    def show() -> None:
        columns = ["office", "currency", "records", "amount", "drawn from"]
        out.table("Usage per office", columns, rows(response.office_totals))
        out.table("Company totals", columns, rows(response.company_totals))

    out.result(response, show)


@app.command("list")
@paged
def list_usage(
    ctx: typer.Context,
    company: Company,
    office: Annotated[str, typer.Option("--office", help="Only this office.")] = "",
    kind: Annotated[Kind | None, typer.Option("--kind", case_sensitive=False)] = None,
    paging: Paging = FIRST_PAGE,
    json_flag: Json = False,
) -> None:
    """Usage history, oldest first."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits

    found: Listed[credits_pb2.UsageRecord] = listed(
        credits,
        credits.stub.ListUsage,
        credits_pb2.ListUsageRequest(
            company_id=company,
            office_id=office,
            kind=kind_value(kind),
        ),
        "usage",
        paging,
    )

    def show() -> None:
        out.table(
            "Usage",
            ["when", "office", "kind", "amount", "drawn from"],
            [
                (
                    timestamp(u.occur_time),
                    u.office_id,
                    kind_name(u.kind),
                    money(u.amount_minor, u.currency),
                    split_text(u.split, u.currency),
                )
                for u in found.items
            ],
        )

    out.listing("usage", found, show)


@app.command("pooling")
def pooling(
    ctx: typer.Context,
    currency: Annotated[str, typer.Argument(help="ISO 4217 currency.")],
    company: Company,
    enabled: Annotated[
        bool, typer.Option("--on/--off", help="Turn unified credit pooling on or off.")
    ] = True,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Turn unified credit pooling on (office balances move to the company) or off."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    code = currency_code(currency)
    response: credits_pb2.SetCreditPoolingResponse = credits.call(
        credits.stub.SetCreditPooling,
        credits_pb2.SetCreditPoolingRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            currency=code,
            enabled=enabled,
        ),
    )
    out.result(
        response,
        lambda: out.console.print(
            f"Unified credit pooling for {code}: {'on' if response.pooling.enabled else 'off'}; "
            f"shared balance {money(response.company_pool_balance_minor, code)}"
            + (
                f" ({len(response.transfers)} office balance(s) moved in)"
                if response.transfers
                else ""
            )
        ),
    )


@app.command("grant")
def grant(
    ctx: typer.Context,
    amount: Annotated[int, typer.Argument(min=1, help="Amount in minor units.")],
    company: Company,
    target: Annotated[
        Target, typer.Option("--to", case_sensitive=False, help="Where the credits go.")
    ] = Target.company_pool,
    office: Annotated[
        str, typer.Option("--office", help="For office_balance (and ai_agent_credits).")
    ] = "",
    currency: Annotated[str, typer.Option("--currency", help="Required for company_pool.")] = "",
    note: Annotated[str, typer.Option("--note", help="Kept with the grant.")] = "",
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Add credits to the company pool, an office's balance, or the AI agent credits."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    response: credits_pb2.GrantCreditsResponse = credits.call(
        credits.stub.GrantCredits,
        credits_pb2.GrantCreditsRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            target=credits_pb2.GrantTarget.Value(f"GRANT_TARGET_{target.value.upper()}"),
            office_id=office,
            currency=currency_code(currency),
            amount_minor=amount,
            note=note,
        ),
    )
    g = response.grant
    out.result(
        response,
        lambda: out.console.print(
            f"Granted {money(g.amount_minor, g.currency)} to {target.value.replace('_', ' ')}; "
            f"balance now {money(response.balance_minor, g.currency)}"
        ),
    )
