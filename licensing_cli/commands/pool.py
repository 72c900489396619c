"""`licensing pool`: enable a currency's pool, look at it and its units, take units."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from typing import Annotated

import typer

from licensing.billing.v1 import billing_pb2
from licensing.pool.v1 import pool_pb2
from licensing_cli.clients import Clients
from licensing_cli.discovery import health_of
from licensing_cli.names import OfficeNames
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
from licensing_cli.output import Output, enum_name, money_of, timestamp, to_dict
from licensing_cli.pages import Listed, listed
from licensing_cli.session import session_of

app = typer.Typer(help="Company pools and license units.", no_args_is_help=True)

Currency = Annotated[str, typer.Argument(help="ISO 4217 currency, e.g. USD.")]
Office = Annotated[str, typer.Argument(help="The office (UUID).")]
LicenseType = Annotated[str, typer.Argument(help="License type code, e.g. connect.")]


class State(StrEnum):
    """Unit states, as filters."""

    spare = "spare"
    assigned = "assigned"
    pooled = "pooled"
    held = "held"
    removal_scheduled = "removal_scheduled"
    terminated = "terminated"


def state_name(value: int) -> str:
    return enum_name(value, pool_pb2.UnitState.Name, "UNIT_STATE_")


@app.command("enable")
def enable(
    ctx: typer.Context,
    currency: Currency,
    company: Company,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Change nothing: show which spare units would enter the pool and which"
            " prices differ between plans (billing's PreviewEnablePool: both in one call).",
        ),
    ] = False,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Turn pooling on for one currency: one-way; every office of the currency takes part."""
    session = session_of(ctx)
    if dry_run:
        _preview(session.output(json_flag), session.clients, company, currency_code(currency))
        return
    out = session.output(json_flag)
    pool = session.clients.pool
    code = currency_code(currency)
    response: pool_pb2.EnablePoolResponse = pool.call(
        pool.stub.EnablePool,
        pool_pb2.EnablePoolRequest(
            request_id=request_id(given_request_id), company_id=company, currency=code
        ),
    )
    mismatches = _mismatches(session.clients, company, code)

    def show() -> None:
        names = OfficeNames.of(session.clients, company)
        out.console.print(f"[bold]Pool {code}: enabled[/bold]")
        out.console.print(
            f"Offices taking part: {len(response.office_ids)}; "
            f"spare units that moved into the pool: {response.moved_total}"
        )
        out.table(
            "Units that moved",
            ["office", "type", "#quantity"],
            [(names.label(m.office_id), m.license_type, m.quantity) for m in response.moved],
        )
        _show_mismatches(out, mismatches, names)

    result = to_dict(response)
    result["price_mismatches"] = [to_dict(m) for m in mismatches]
    out.result(result, show)


def _preview(out: Output, clients: Clients, company: str, code: str) -> None:
    """What enabling would do, from billing, which asks the pool and checks the prices."""
    billing = clients.billing
    preview: billing_pb2.PreviewEnablePoolResponse = billing.call(
        billing.stub.PreviewEnablePool,
        billing_pb2.PreviewEnablePoolRequest(company_id=company, currency=code),
    )

    def show() -> None:
        names = OfficeNames.of(clients, company)
        out.console.print(f"[bold]Pool {code}: preview (nothing changed)[/bold]")
        if not preview.can_enable:
            out.warn(
                f"enabling would be refused: {preview.refusal_reason}: {preview.refusal_message}"
            )
        out.console.print(
            f"Offices taking part: {len(preview.office_ids)}; "
            f"spare units that would move into the pool: {preview.entering_units}"
        )
        out.table(
            "Units that would move",
            ["office", "type", "#quantity"],
            [(names.label(e.office_id), e.license_type, e.quantity) for e in preview.entries],
        )
        _show_mismatches(out, list(preview.mismatches), names)
        if preview.can_enable and preview.in_parity:
            out.console.print(
                "Prices agree across the currency's plans: purchases will go through."
            )

    out.result(to_dict(preview), show)


def _mismatches(clients: Clients, company: str, currency: str) -> list[billing_pb2.PriceMismatch]:
    """Price-book mismatches (they do not block enabling but block purchases)."""
    if health_of(clients.channel("billing")) != "SERVING":
        return []
    billing = clients.billing
    parity: billing_pb2.CheckPricingParityResponse = billing.call(
        billing.stub.CheckPricingParity,
        billing_pb2.CheckPricingParityRequest(company_id=company, currency=currency),
    )
    return list(parity.mismatches)


def _show_mismatches(
    out: Output, mismatches: list[billing_pb2.PriceMismatch], names: OfficeNames
) -> None:
    if not mismatches:
        return
    out.warn("these prices differ between plans; purchases of these types are refused:")
    out.table(
        "Price mismatches",
        ["type", "plan", "office", "unit price"],
        [
            (m.license_type, p.plan_id, names.label(p.office_id), money_of(p.unit_price))
            for m in mismatches
            for p in m.plan_prices
        ],
    )


@app.command("show")
def show_pool(
    ctx: typer.Context, currency: Currency, company: Company, json_flag: Json = False
) -> None:
    """Whether pooling is on, what rests in the pool, and unit counts by state."""
    session = session_of(ctx)
    out = session.output(json_flag)
    pool = session.clients.pool
    code = currency_code(currency)
    found: pool_pb2.GetPoolResponse = pool.call(
        pool.stub.GetPool, pool_pb2.GetPoolRequest(company_id=company, currency=code)
    )
    snapshot: pool_pb2.GetSnapshotResponse = pool.call(
        pool.stub.GetSnapshot, pool_pb2.GetSnapshotRequest(company_id=company, currency=code)
    )
    counts: Counter[str] = Counter()
    for line in snapshot.office_lines:
        counts["assigned"] += line.assigned
        counts["spare"] += line.spare
        counts["held"] += line.held
        counts["removal_scheduled"] += line.removal_scheduled
    for pool_line in snapshot.pool_lines:
        counts["pooled"] += pool_line.pooled
        counts["held"] += pool_line.held
    totals = {
        key: counts[key] for key in ("assigned", "spare", "pooled", "held", "removal_scheduled")
    }
    totals["live"] = snapshot.live_units

    def show() -> None:
        state = "[green]enabled[/green]" if found.pool.enabled else "not enabled"
        since = f" since {timestamp(found.pool.enable_time)}" if found.pool.enabled else ""
        out.console.print(f"[bold]Pool {code}[/bold]: {state}{since}")
        out.table(
            "In the pool",
            ["type", "claimable", "in grace"],
            [(c.license_type, c.claimable, c.in_grace) for c in found.contents],
            empty="nothing",
        )
        out.table(
            f"Units in {code} (snapshot {timestamp(snapshot.snapshot_time)})",
            ["assigned", "spare", "pooled", "held", "removal", "#live"],
            [tuple(totals.values())],
        )

    result = to_dict(found)
    result["counts"] = totals
    result["snapshot_time"] = to_dict(snapshot).get("snapshot_time")
    out.result(result, show)


@app.command("units")
@paged
def units(
    ctx: typer.Context,
    company: Company,
    office: Annotated[str, typer.Option("--office", help="Only this office's units.")] = "",
    currency: CurrencyFilter = "",
    license_type: Annotated[str, typer.Option("--type", help="Only this license type.")] = "",
    state: Annotated[
        State | None, typer.Option("--state", case_sensitive=False, help="Only this state.")
    ] = None,
    paging: Paging = FIRST_PAGE,
    json_flag: Json = False,
) -> None:
    """List license units, oldest first, with filters and pagination."""
    session = session_of(ctx)
    out = session.output(json_flag)
    pool = session.clients.pool
    state_value = (
        pool_pb2.UnitState.Value(f"UNIT_STATE_{state.value.upper()}")
        if state
        else pool_pb2.UNIT_STATE_UNSPECIFIED
    )

    found: Listed[pool_pb2.Unit] = listed(
        pool,
        pool.stub.ListUnits,
        pool_pb2.ListUnitsRequest(
            company_id=company,
            office_id=office,
            currency=currency_code(currency),
            license_type=license_type,
            state=state_value,
        ),
        "units",
        paging,
    )

    def show() -> None:
        names = OfficeNames.of(session.clients, company) if found.items else OfficeNames()
        out.table(
            "Units",
            ["unit", "office", "currency", "type", "state", "assignee", "claimable at"],
            [
                (
                    u.unit_id,
                    names.label(u.office_id),
                    u.currency,
                    u.license_type,
                    state_name(u.state),
                    u.assignee.id if u.HasField("assignee") else "",
                    timestamp(u.claimable_at) if u.HasField("claimable_at") else "",
                )
                for u in found.items
            ],
        )

    out.listing("units", found, show)


@app.command("add-units")
def add_units(
    ctx: typer.Context,
    office: Office,
    license_type: LicenseType,
    quantity: Annotated[int, typer.Argument(min=1, max=10000, help="How many.")],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Add units to an office as SPARE, without billing (seeding, corrections)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    pool = session.clients.pool
    response: pool_pb2.AddUnitsResponse = pool.call(
        pool.stub.AddUnits,
        pool_pb2.AddUnitsRequest(
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
            f"Added {len(response.units)} {license_type} unit(s) to office {office} as SPARE."
        ),
    )


@app.command("acquire")
def acquire(
    ctx: typer.Context,
    office: Office,
    license_type: LicenseType,
    company: Company,
    quantity: Annotated[int, typer.Option("--quantity", "-n", min=1, max=10000)] = 1,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Take units for an office (own spare, own returns in grace, then the pool)."""
    session = session_of(ctx)
    out = session.output(json_flag)
    pool = session.clients.pool
    response: pool_pb2.AcquireResponse = pool.call(
        pool.stub.Acquire,
        pool_pb2.AcquireRequest(
            request_id=request_id(given_request_id),
            company_id=company,
            office_id=office,
            license_type=license_type,
            quantity=quantity,
        ),
    )

    def show() -> None:
        receipt = response.receipt
        out.console.print(f"Acquired {len(response.units)} {license_type} unit(s).")
        out.table(
            f"Receipt {receipt.receipt_id}",
            ["source", "#quantity"],
            [
                (
                    enum_name(t.source, pool_pb2.AllocationSource.Name, "ALLOCATION_SOURCE_"),
                    t.quantity,
                )
                for t in receipt.taken
            ],
        )
        out.table("Units", ["unit"], [(u.unit_id,) for u in response.units])

    out.result(response, show)


@app.command("return")
def return_units(
    ctx: typer.Context,
    unit_ids: Annotated[list[str], typer.Argument(help="Assigned or spare units to give back.")],
    company: Company,
    given_request_id: RequestId = None,
    json_flag: Json = False,
) -> None:
    """Give units back: to the pool (with the grace period) or to SPARE."""
    session = session_of(ctx)
    out = session.output(json_flag)
    pool = session.clients.pool
    response: pool_pb2.ReturnUnitsResponse = pool.call(
        pool.stub.ReturnUnits,
        pool_pb2.ReturnUnitsRequest(
            request_id=request_id(given_request_id), company_id=company, unit_ids=unit_ids
        ),
    )
    out.result(
        response,
        lambda: out.table(
            "Returned units",
            ["unit", "type", "state", "claimable at"],
            [
                (u.unit_id, u.license_type, state_name(u.state), timestamp(u.claimable_at))
                for u in response.units
            ],
        ),
    )
