"""`licensing credits`: office caps on the shared company credit balance, thresholds on
it, and the alerts recorded when usage crosses them."""

from __future__ import annotations

from typing import Annotated

import typer

from licensing.credits.v1 import credits_pb2
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
from licensing_cli.output import money, timestamp
from licensing_cli.pages import Listed, listed
from licensing_cli.session import session_of

app = typer.Typer(
    help="Caps and alerts on the shared company credit balance (credits service).",
    no_args_is_help=True,
)
cap_app = typer.Typer(
    help="What one office may draw from the shared balance per billing period.",
    no_args_is_help=True,
)
threshold_app = typer.Typer(
    help="Levels of the shared balance that record an alert when usage crosses them.",
    no_args_is_help=True,
)
app.add_typer(cap_app, name="cap")
app.add_typer(threshold_app, name="threshold")


def threshold_text(threshold: credits_pb2.CreditThreshold, currency: str) -> str:
    if threshold.WhichOneof("level") == "percent":
        return f"{threshold.percent}% of the top-up level"
    return f"balance {money(threshold.balance_minor, currency)}"


def cap_row(cap: credits_pb2.OfficeCreditCap) -> tuple[object, ...]:
    return (
        cap.office_id,
        money(cap.cap_minor, cap.currency),
        money(cap.drawn_minor, cap.currency),
        f"{timestamp(cap.period_start_time)} .. {timestamp(cap.period_end_time)}",
    )


CAP_COLUMNS = ["office", "cap", "drawn this period", "period"]


@cap_app.command("set")
def set_cap(
    ctx: typer.Context,
    office: Annotated[str, typer.Argument(help="The office (UUID).")],
    amount: Annotated[
        int,
        typer.Argument(min=0, help="Cap per billing period, in minor units of its currency."),
    ],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Cap what an office draws from the shared balance per period (0: nothing)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    response: credits_pb2.SetOfficeCreditCapResponse = credits.call(
        credits.stub.SetOfficeCreditCap,
        credits_pb2.SetOfficeCreditCapRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            office_id=office,
            cap_minor=amount,
        ),
    )
    c = response.cap
    out.result(
        response,
        lambda: out.console.print(
            f"Office {c.office_id} may draw {money(c.cap_minor, c.currency)} from the shared "
            f"balance per period; drawn this period: {money(c.drawn_minor, c.currency)}"
        ),
    )


@cap_app.command("clear")
def clear_cap(
    ctx: typer.Context,
    office: Annotated[str, typer.Argument(help="The office (UUID).")],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Remove an office's cap: it may again draw all of the shared balance."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    response: credits_pb2.ClearOfficeCreditCapResponse = credits.call(
        credits.stub.ClearOfficeCreditCap,
        credits_pb2.ClearOfficeCreditCapRequest(
            request_id=request_id(given_request_id), company_id=company, office_id=office
        ),
    )
    out.result(
        {"cleared": response.cleared},
        lambda: out.console.print(
            f"Office {office}: cap removed" if response.cleared else f"Office {office} had no cap"
        ),
    )


@cap_app.command("list")
@paged
def list_caps(
    ctx: typer.Context,
    company: Company,
    paging: Paging = FIRST_PAGE,
    json_flag: Json = False,
) -> None:
    """The offices with a cap, and what each drew in its current period."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits

    caps: Listed[credits_pb2.OfficeCreditCap] = listed(
        credits,
        credits.stub.ListOfficeCreditCaps,
        credits_pb2.ListOfficeCreditCapsRequest(company_id=company),
        "caps",
        paging,
    )
    out.listing(
        "caps",
        caps,
        lambda: out.table(
            "Office caps on the shared balance", CAP_COLUMNS, [cap_row(c) for c in caps.items]
        ),
    )


@threshold_app.command("set")
def set_thresholds(
    ctx: typer.Context,
    currency: Annotated[str, typer.Argument(help="ISO 4217 currency of the shared balance.")],
    company: Company,
    balances: Annotated[
        list[int] | None,
        typer.Option("--balance", help="Alert when the balance falls to this (minor units)."),
    ] = None,
    percents: Annotated[
        list[int] | None,
        typer.Option("--percent", help="Alert at this percent (1-99) of the top-up level."),
    ] = None,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Replace the thresholds of a currency (none given: remove them all)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    code = currency_code(currency)
    thresholds = [credits_pb2.CreditThreshold(balance_minor=v) for v in balances or []]
    thresholds += [credits_pb2.CreditThreshold(percent=p) for p in percents or []]
    response: credits_pb2.SetCreditThresholdsResponse = credits.call(
        credits.stub.SetCreditThresholds,
        credits_pb2.SetCreditThresholdsRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            currency=code,
            thresholds=thresholds,
        ),
    )
    out.result(
        response,
        lambda: out.console.print(
            f"Thresholds of the {code} shared balance: "
            + (", ".join(threshold_text(t, code) for t in response.thresholds) or "none")
        ),
    )


@threshold_app.command("show")
def show_thresholds(
    ctx: typer.Context,
    currency: Annotated[str, typer.Argument(help="ISO 4217 currency of the shared balance.")],
    company: Company,
    json_flag: Json = False,
) -> None:
    """The thresholds of a currency and the top-up level percents are taken of."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits
    code = currency_code(currency)
    response: credits_pb2.GetCreditThresholdsResponse = credits.call(
        credits.stub.GetCreditThresholds,
        credits_pb2.GetCreditThresholdsRequest(company_id=company, currency=code),
    )

    def show() -> None:
        out.table(
            f"Thresholds of the {code} shared balance "
            f"(top-up level {money(response.top_up_level_minor, code)})",
            ["threshold"],
            [(threshold_text(t, code),) for t in response.thresholds],
        )

    out.result(response, show)


@app.command("alerts")
@paged
def alerts(
    ctx: typer.Context,
    company: Company,
    currency: CurrencyFilter = "",
    paging: Paging = FIRST_PAGE,
    json_flag: Json = False,
) -> None:
    """Thresholds crossed, oldest first: one alert per threshold per month."""
    session = session_of(ctx)
    out = session.output(json_flag)
    credits = session.clients.credits

    found: Listed[credits_pb2.CreditAlert] = listed(
        credits,
        credits.stub.ListCreditAlerts,
        credits_pb2.ListCreditAlertsRequest(company_id=company, currency=currency_code(currency)),
        "alerts",
        paging,
    )

    def show() -> None:
        out.table(
            "Credit alerts",
            ["when", "currency", "threshold", "level", "balance after", "office"],
            [
                (
                    timestamp(a.create_time),
                    a.currency,
                    threshold_text(a.threshold, a.currency),
                    money(a.level_minor, a.currency),
                    money(a.balance_minor, a.currency),
                    a.office_id,
                )
                for a in found.items
            ],
        )

    out.listing("alerts", found, show)
