"""`licensing import`: CSV mass configuration of Phone System licenses.

`check` is a dry run (the report and the allocation quote, nothing changes); `apply`
starts the import under an import id and follows its progress with a progress bar.
Re-running `apply` with the same import id and file never applies anything twice.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from licensing.provisioning.v1 import provisioning_pb2, provisioning_pb2_grpc
from licensing_cli.clients import CallFailed, Endpoint
from licensing_cli.options import Company, Json
from licensing_cli.output import Output, enum_name, to_dict
from licensing_cli.session import session_of

app = typer.Typer(
    help="CSV mass configuration: template, dry run, apply with progress, status.",
    no_args_is_help=True,
)

CsvFile = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, help="CSV: Ext Key, Number, User, Addon..."
    ),
]
OfficeOption = Annotated[
    str, typer.Option("--office", help="The office whose Phone System licenses are set.")
]
ImportId = Annotated[
    str | None,
    typer.Option(
        "--import-id",
        help="Idempotency key of the import (default: a new one, printed). Re-run with the "
        "same id to resume or confirm an import; nothing is applied twice.",
    ),
]


def state_name(value: int) -> str:
    return enum_name(value, provisioning_pb2.ImportState.Name, "IMPORT_STATE_")


def stage_name(value: int) -> str:
    name = enum_name(value, provisioning_pb2.ImportStage.Name, "IMPORT_STAGE_")
    return "" if name == "UNSPECIFIED" else name.lower().replace("_", " ")


def show_report(out: Output, job: provisioning_pb2.Import) -> None:
    """Rows, problems by row, warnings, and the allocation quote."""
    label = f"Import {job.import_id}" if job.import_id else "Dry run"
    out.console.print(
        f"[bold]{escape(label)}[/bold]: {state_name(job.state)}, {job.row_count} row(s), "
        f"{job.error_count} error(s), {job.rows_reconfiguring} reconfiguring existing licenses"
    )
    if job.errors:
        out.table(
            "Errors",
            ["row", "column", "reason", "problem"],
            [(i.row or "file", i.column, i.reason, i.message) for i in job.errors],
        )
        if job.error_count > len(job.errors):
            out.note(f"... and {job.error_count - len(job.errors)} more")
    if job.warnings:
        out.table(
            "Warnings",
            ["row", "column", "reason", "note"],
            [(i.row, i.column, i.reason, i.message) for i in job.warnings],
        )
    if job.quote:
        out.table(
            "Licenses the file needs",
            ["type", "needed", "own spare", "own returns", "pool", "shortfall"],
            [
                (
                    q.license_type,
                    q.needed,
                    q.own_spare,
                    q.own_returns_in_grace,
                    q.pool_claimable,
                    q.shortfall,
                )
                for q in job.quote
            ],
        )
    if job.HasField("failure") and job.failure.reason:
        out.console.print(
            f"[red bold]failed:[/red bold] {job.failure.reason} — {escape(job.failure.message)}"
        )
        for key, value in sorted(job.failure.metadata.items()):
            out.console.print(f"  {key}: {escape(value)}")


@app.command("template")
def template(
    ctx: typer.Context,
    output_file: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    header_only: Annotated[bool, typer.Option("--header-only", help="No sample rows.")] = False,
) -> None:
    """Download the CSV template (with sample rows unless --header-only)."""
    provisioning = session_of(ctx).clients.provisioning
    response: provisioning_pb2.GetMassConfigurationTemplateResponse = provisioning.call(
        provisioning.stub.GetMassConfigurationTemplate,
        provisioning_pb2.GetMassConfigurationTemplateRequest(header_only=header_only),
    )
    if output_file is None:
        typer.echo(response.content.decode("utf-8-sig"), nl=False)
    else:
        output_file.write_bytes(response.content)
        typer.echo(f"Wrote {output_file} ({len(response.content)} bytes)", err=True)


@app.command("check")
def check(
    ctx: typer.Context,
    csv_file: CsvFile,
    office: OfficeOption,
    company: Company,
    json_flag: Json = False,
) -> None:
    """Dry run: validate the file and quote the licenses it needs; nothing changes.

    Exits 2 when the file has errors.
    """
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.MassConfigureResponse = provisioning.call(
        provisioning.stub.MassConfigure,
        provisioning_pb2.MassConfigureRequest(
            company_id=company,
            office_id=office,
            content=csv_file.read_bytes(),
            validate_only=True,
        ),
    )
    job = response.import_job

    def show() -> None:
        show_report(out, job)
        out.console.print(verdict(job))

    out.result(response, show)
    if job.error_count:
        raise typer.Exit(2)


def verdict(job: provisioning_pb2.Import) -> str:
    """Whether the file can be applied, in one plain sentence."""
    if not job.error_count:
        return (
            f"[green bold]This file can be applied[/green bold]: {job.row_count} row(s), "
            "the office has every license it needs (`licensing import apply`)."
        )
    missing = [i for i in job.errors if i.row == 0 and i.reason == "NO_LICENSE_AVAILABLE"]
    in_rows = job.error_count - len(missing)
    why = []
    if in_rows:
        why.append(f"fix the {in_rows} error(s) in its rows")
    if missing:
        why.append("purchase or free the licenses it lacks (`licensing checkout purchase`)")
    return (
        "[red bold]This file cannot be applied as it stands[/red bold]: " + " and ".join(why) + "."
    )


@app.command("apply")
def apply(
    ctx: typer.Context,
    csv_file: CsvFile,
    office: OfficeOption,
    company: Company,
    import_id: ImportId = None,
    json_flag: Json = False,
) -> None:
    """Apply the file, all or nothing, following its progress.

    Exits 2 when the import failed (nothing was applied).
    """
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    chosen = import_id or str(uuid.uuid4())
    out.note(f"import id: {chosen}")
    started: provisioning_pb2.MassConfigureResponse = provisioning.call(
        provisioning.stub.MassConfigure,
        provisioning_pb2.MassConfigureRequest(
            import_id=chosen,
            company_id=company,
            office_id=office,
            content=csv_file.read_bytes(),
        ),
    )
    job = started.import_job
    if job.state == provisioning_pb2.IMPORT_STATE_RUNNING:
        resume = f"it goes on in the service: `licensing import status {chosen}`"
        try:
            job = _follow(provisioning, company, chosen, job, show_bar=not out.json)
        except KeyboardInterrupt:
            out.warn(f"stopped following import {chosen}; {resume}")
            raise typer.Exit(130) from None
        except CallFailed:
            out.warn(f"lost track of import {chosen}; {resume}")
            raise
    out.result(provisioning_pb2.GetImportResponse(import_job=job), lambda: show_report(out, job))
    if job.state != provisioning_pb2.IMPORT_STATE_SUCCEEDED:
        if job.state == provisioning_pb2.IMPORT_STATE_FAILED:
            out.note(
                "Nothing was applied. Once the cause is fixed, apply the file again with "
                f"--import-id {chosen}: a failed import is not remembered."
            )
        raise typer.Exit(2)


def progress_rows(job: provisioning_pb2.Import) -> tuple[int, int]:
    """(rows done, rows): every row is applied at once at the end, so until then a row
    counts as done in the share of the units held and assigned for the file."""
    p = job.progress
    rows = job.row_count
    if job.state == provisioning_pb2.IMPORT_STATE_SUCCEEDED or p.rows_applied >= rows:
        return p.rows_applied, max(rows, 1)
    units = 2 * p.units_total
    share = (p.units_reserved + p.units_committed) / units if units else 0.0
    return min(int(rows * share), rows - 1) if rows else 0, max(rows, 1)


def _follow(
    provisioning: Endpoint[provisioning_pb2_grpc.ProvisioningServiceStub],
    company: str,
    import_id: str,
    job: provisioning_pb2.Import,
    show_bar: bool,
) -> provisioning_pb2.Import:
    """Watches the import until it ends, with a progress bar on stderr."""
    stub = provisioning.stub
    request = provisioning_pb2.WatchImportRequest(company_id=company, import_id=import_id)
    last = job
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show_bar, transient=False) as progress:
        done, total = progress_rows(job)
        task = progress.add_task(stage_name(job.stage) or "starting", total=total, completed=done)
        for update in provisioning.stream(stub.WatchImport, request):
            last = update.import_job
            done, total = progress_rows(last)
            stage = stage_name(last.stage) or state_name(last.state).lower()
            progress.update(task, description=stage, completed=done, total=total)
    return last


@app.command("status")
def status(
    ctx: typer.Context,
    import_id: Annotated[str, typer.Argument(help="The import id.")],
    company: Company,
    json_flag: Json = False,
) -> None:
    """Show an import: state, stage, progress, problems."""
    session = session_of(ctx)
    out = session.output(json_flag)
    provisioning = session.clients.provisioning
    response: provisioning_pb2.GetImportResponse = provisioning.call(
        provisioning.stub.GetImport,
        provisioning_pb2.GetImportRequest(company_id=company, import_id=import_id),
    )
    job = response.import_job

    def show() -> None:
        show_report(out, job)
        p = job.progress
        out.console.print(
            f"progress: {p.units_reserved}/{p.units_total} held, "
            f"{p.units_committed}/{p.units_total} assigned, {p.rows_applied}/{job.row_count} rows"
        )

    out.result({**to_dict(response)}, show)
