"""`licensing unit`: one license unit, and its history as a timeline that answers "where
is this license, and why"."""

from __future__ import annotations

from typing import Annotated

import typer

from licensing.pool.v1 import pool_pb2
from licensing_cli.options import Company, Json, Paging, uuid_text
from licensing_cli.output import enum_name, timestamp, to_dict
from licensing_cli.pages import listed
from licensing_cli.session import session_of

app = typer.Typer(help="One license unit and its history.", no_args_is_help=True)

Unit = Annotated[str, typer.Argument(help="The unit (UUID); also its subscription id.")]
K = pool_pb2.UnitEventKind


def _state(value: int) -> str:
    return enum_name(value, pool_pb2.UnitState.Name, "UNIT_STATE_")


_SOURCES: dict[int, str] = {
    pool_pb2.ALLOCATION_SOURCE_OWN_SPARE: "its own spare units",
    pool_pb2.ALLOCATION_SOURCE_OWN_RETURN_IN_GRACE: "its own return, still in grace",
    pool_pb2.ALLOCATION_SOURCE_POOL: "the pool",
}


def _source(value: int) -> str:
    return _SOURCES.get(value, "?")


def _assignee(event: pool_pb2.UnitEvent) -> str:
    if not event.HasField("assignee"):
        return "nobody named"
    kind = enum_name(event.assignee.kind, pool_pb2.AssigneeKind.Name, "ASSIGNEE_KIND_")
    return f"{kind.lower()} {event.assignee.id}"


def _where(event: pool_pb2.UnitEvent) -> str:
    """Where the event left the unit."""
    if event.state == pool_pb2.UNIT_STATE_POOLED:
        return f"in the pool, claimable from {timestamp(event.claimable_at)}"
    if event.state == pool_pb2.UNIT_STATE_HELD:
        was = _state(event.held_from_state).lower()
        return f"held by hold {event.hold_id} (was {was})"
    if event.state == pool_pb2.UNIT_STATE_ASSIGNED:
        return f"assigned to {_assignee(event)} in office {event.office_id}"
    if event.state == pool_pb2.UNIT_STATE_TERMINATED:
        return "terminated"
    return f"{_state(event.state).lower().replace('_', ' ')} in office {event.office_id}"


def why(event: pool_pb2.UnitEvent) -> str:
    """What happened, in words, with what the event knows about why."""
    kind = event.kind
    receipt = f", receipt {event.receipt_id}" if event.receipt_id else ""
    if kind == K.UNIT_EVENT_KIND_RECORDED:
        text = "recorded when history started"
    elif kind == K.UNIT_EVENT_KIND_CREATED:
        text = f"created in office {event.office_id}"
        text += f" for {event.origin}" if event.origin else ""
    elif kind == K.UNIT_EVENT_KIND_ACQUIRED:
        text = f"taken by office {event.office_id} from {_source(event.source)}{receipt}"
    elif kind == K.UNIT_EVENT_KIND_RESERVED:
        text = (
            f"reserved for office {event.for_office_id} from {_source(event.source)}"
            f" (hold {event.hold_id}{receipt})"
        )
    elif kind == K.UNIT_EVENT_KIND_COMMITTED:
        text = f"hold {event.hold_id} committed to office {event.office_id}{receipt}"
    elif kind == K.UNIT_EVENT_KIND_RELEASED:
        text = f"hold {event.hold_id} released: back as before"
    elif kind == K.UNIT_EVENT_KIND_EXPIRED:
        text = f"hold {event.hold_id} expired: back as before"
    elif kind == K.UNIT_EVENT_KIND_REASSIGNED:
        text = f"reassigned to {_assignee(event)}"
    elif kind == K.UNIT_EVENT_KIND_RETURNED:
        text = f"returned by office {event.office_id}"
    elif kind == K.UNIT_EVENT_KIND_POOLED:
        text = "the pool was enabled: it belongs to the pool"
    elif kind == K.UNIT_EVENT_KIND_REMOVAL_SCHEDULED:
        text = "scheduled for removal at the end of the cycle"
    elif kind == K.UNIT_EVENT_KIND_RESTORED:
        text = "removal cancelled: spare again"
    else:
        text = "terminated"
    return text + (f" [request {event.request_id}]" if event.request_id else "")


@app.command("history")
def history(ctx: typer.Context, unit: Unit, company: Company, json_flag: Json = False) -> None:
    """The unit's timeline: every change, where it left the unit and why, oldest first."""
    session = session_of(ctx)
    out = session.output(json_flag)
    pool = session.clients.pool
    unit_id = uuid_text(unit, "UNIT")
    current: pool_pb2.GetUnitResponse = pool.call(
        pool.stub.GetUnit, pool_pb2.GetUnitRequest(company_id=company, unit_id=unit_id)
    )
    events: list[pool_pb2.UnitEvent] = listed(
        pool,
        pool.stub.ListUnitEvents,
        pool_pb2.ListUnitEventsRequest(company_id=company, unit_id=unit_id),
        "events",
        Paging(size=1000, follow=True),
    ).items

    def show() -> None:
        u = current.unit
        out.console.print(
            f"[bold]Unit {u.unit_id}[/bold]: {u.license_type} in {u.currency}, "
            f"now {_state(u.state)}"
        )
        out.table(
            "History",
            ["when", "what", "then", "why"],
            [
                (
                    timestamp(e.occur_time),
                    enum_name(e.kind, K.Name, "UNIT_EVENT_KIND_"),
                    _where(e),
                    why(e),
                )
                for e in events
            ],
            empty="no changes recorded",
        )
        if events:
            out.console.print(
                f"Where it is: {_where(events[-1])}, since {timestamp(events[-1].occur_time)}."
            )

    out.result({"unit": to_dict(current.unit), "events": [to_dict(e) for e in events]}, show)
