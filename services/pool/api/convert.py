"""The pool's messages to domain commands (checking every field), and domain results
to messages."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common import paging
from libs.common.errors import invalid
from libs.common.handlers import method_name, next_page_token
from libs.common.idempotency import key_for
from libs.common.reasons import Reason
from libs.common.timestamps import timestamp
from libs.common.validation import (
    currency_field,
    license_type_field,
    optional_currency_field,
    optional_uuid_field,
    quantity_field,
    text_field,
    uuid_field,
)
from licensing.pool.v1 import pool_pb2 as pb
from services.pool.domain import errors, holds
from services.pool.domain.history import Cause, EventQuery, UnitEvent
from services.pool.domain.model import (
    Assignee,
    Availability,
    Hold,
    Office,
    PlanKind,
    Pool,
    PoolContent,
    Receipt,
    Source,
    Terms,
    Unit,
    UnitState,
)
from services.pool.domain.units import Snapshot
from services.pool.use_cases.allocation import Allocate, Allocated
from services.pool.use_cases.holds import Commit, Committed, Release
from services.pool.use_cases.offices import ListOffices
from services.pool.use_cases.pools import Enabled, EnablePool, GetAvailability
from services.pool.use_cases.units import (
    ListUnits,
    OfficeUnits,
    ReassignUnits,
    ReturnUnits,
    TerminateUnits,
)

_PLAN_KINDS: dict[pb.PlanKind.ValueType, PlanKind] = {
    pb.PLAN_KIND_BUNDLE: PlanKind.BUNDLE,
    pb.PLAN_KIND_LEGACY: PlanKind.LEGACY,
    pb.PLAN_KIND_NONE: PlanKind.NONE,
}
_PLAN_KIND_PB = {v: k for k, v in _PLAN_KINDS.items()}
_STATES = {
    pb.UNIT_STATE_SPARE: UnitState.SPARE,
    pb.UNIT_STATE_ASSIGNED: UnitState.ASSIGNED,
    pb.UNIT_STATE_POOLED: UnitState.POOLED,
    pb.UNIT_STATE_HELD: UnitState.HELD,
    pb.UNIT_STATE_REMOVAL_SCHEDULED: UnitState.REMOVAL_SCHEDULED,
    pb.UNIT_STATE_TERMINATED: UnitState.TERMINATED,
}
_STATE_PB = {v: k for k, v in _STATES.items()}
_SOURCES = {
    pb.ALLOCATION_SOURCE_OWN_SPARE: Source.OWN_SPARE,
    pb.ALLOCATION_SOURCE_OWN_RETURN_IN_GRACE: Source.OWN_RETURN_IN_GRACE,
    pb.ALLOCATION_SOURCE_POOL: Source.POOL,
}
_SOURCE_PB = {v: k for k, v in _SOURCES.items()}
_ASSIGNEE_KINDS = {
    pb.ASSIGNEE_KIND_USER: "USER",
    pb.ASSIGNEE_KIND_FAX_LINE: "FAX_LINE",
    pb.ASSIGNEE_KIND_NUMBER: "NUMBER",
    pb.ASSIGNEE_KIND_BASE_LICENSE: "BASE_LICENSE",
}
_ASSIGNEE_KIND_PB = {v: k for k, v in _ASSIGNEE_KINDS.items()}


# --- fields -------------------------------------------------------------------------------


class _OfCompany(Protocol):
    @property
    def company_id(self) -> str: ...


def company(request: _OfCompany) -> uuid.UUID:
    """The `company_id` every pool request but PutOffice carries."""
    return uuid_field("company_id", request.company_id)


def license_type(field: str, code: str) -> str:
    return license_type_field(field, code).code


def assignees(items: Iterable[pb.Assignee]) -> tuple[Assignee, ...]:
    result = []
    for index, item in enumerate(items):
        kind = _ASSIGNEE_KINDS.get(item.kind)
        if kind is None:
            raise invalid(f"assignees[{index}].kind", "is required")
        result.append(Assignee(kind, text_field(f"assignees[{index}].id", item.id)))
    return tuple(result)


def one_per_unit(named: tuple[Assignee, ...], units: int) -> tuple[Assignee, ...]:
    """Assignees for `units` units: none, or one each, none named twice."""
    if named and len(named) != units:
        raise errors.assignee_count(units, len(named))
    ids = [(a.kind, a.id) for a in named if a.id]
    if len(set(ids)) != len(ids):
        raise errors.duplicate_assignee()
    return named


def _sources(values: Iterable[int]) -> frozenset[Source]:
    result = set()
    for value in values:
        if value not in _SOURCES:
            raise invalid("sources", f"unknown allocation source {value}")
        result.add(_SOURCES[value])  # type: ignore[index]
    return frozenset(result)


def _unit_ids(values: Iterable[str]) -> tuple[uuid.UUID, ...]:
    unit_ids = tuple(uuid_field(f"unit_ids[{i}]", u) for i, u in enumerate(values))
    if not unit_ids:
        raise invalid("unit_ids", "is required", Reason.MISSING_FIELD.name)
    quantity_field("unit_ids", len(unit_ids))
    if len(set(unit_ids)) != len(unit_ids):
        raise invalid("unit_ids", "lists a unit twice")
    return unit_ids


def _plan_kind(value: pb.PlanKind.ValueType) -> PlanKind:
    kind = _PLAN_KINDS.get(value)
    if kind is None:
        raise invalid(
            "office.plan_kind", "must be PLAN_KIND_BUNDLE, PLAN_KIND_LEGACY or PLAN_KIND_NONE"
        )
    return kind


# --- requests -> commands -----------------------------------------------------------------


def office(request: pb.PutOfficeRequest) -> Office:
    o = request.office
    return Office(
        company_id=uuid_field("office.company_id", o.company_id),
        office_id=uuid_field("office.office_id", o.office_id),
        currency=currency_field("office.currency", o.currency),
        plan_kind=_plan_kind(o.plan_kind),
        primary=o.primary,
        display_name=text_field("office.display_name", o.display_name, 200, required=False),
    )


class _OfficeUnitsRequest(Protocol):
    request_id: str
    company_id: str
    office_id: str
    license_type: str
    quantity: int


class _Mutation(Protocol):
    @property
    def request_id(self) -> str: ...


def cause(request: _Mutation, origin: str | None = None) -> Cause:
    """What unit history records as the reason of a mutation's changes."""
    return Cause(request.request_id or None, origin)


def office_units(request: _OfficeUnitsRequest, origin: str | None = None) -> OfficeUnits:
    return OfficeUnits(
        company_id=uuid_field("company_id", request.company_id),
        office_id=uuid_field("office_id", request.office_id),
        license_type=license_type("license_type", request.license_type),
        quantity=quantity_field("quantity", request.quantity),
        cause=cause(request, origin),
    )


def add_units(request: pb.AddUnitsRequest) -> OfficeUnits:
    origin = text_field("origin", request.origin, required=False)
    return office_units(request, origin or None)


def without_origin(request: pb.AddUnitsRequest) -> pb.AddUnitsRequest:
    """The request as its request_id's fingerprint sees it: `origin` only labels the
    units' history, so a retry that names it differently (a caller upgraded between
    two attempts) replays the first call instead of being REQUEST_ID_REUSED."""
    keyed = pb.AddUnitsRequest()
    keyed.CopyFrom(request)
    keyed.ClearField("origin")
    return keyed


def acquire(request: pb.AcquireRequest) -> Allocate:
    company_id = company(request)
    quantity = quantity_field("quantity", request.quantity)
    named = one_per_unit(assignees(request.assignees), quantity)
    return _allocate(request, company_id, quantity, assignees=named)


def reserve(request: pb.ReserveRequest, terms: Terms) -> Allocate:
    company_id = company(request)
    return _allocate(
        request,
        company_id,
        quantity_field("quantity", request.quantity),
        hold_ttl=holds.hold_ttl(request.ttl_seconds, terms.hold_default, terms.hold_max),
        allow_partial=request.allow_partial,
    )


def _allocate(
    request: pb.AcquireRequest | pb.ReserveRequest,
    company_id: uuid.UUID,
    quantity: int,
    *,
    assignees: tuple[Assignee, ...] = (),
    hold_ttl: timedelta | None = None,
    allow_partial: bool = False,
) -> Allocate:
    """The fields Acquire and Reserve share, then the request's idempotency key."""
    office_id = uuid_field("office_id", request.office_id)
    code = license_type("license_type", request.license_type)
    sources = _sources(request.sources)
    key = key_for(method_name(), company_id, request)
    return Allocate(
        key, company_id, office_id, code, quantity, sources, assignees, hold_ttl, allow_partial
    )


def commit(request: pb.CommitRequest) -> Commit:
    company_id = company(request)
    hold_id = uuid_field("hold_id", request.hold_id)
    named = assignees(request.assignees)
    named = one_per_unit(named, len(named))  # counted by the hold
    return Commit(company_id, hold_id, named, cause(request))


def release(request: pb.ReleaseRequest) -> Release:
    return Release(company(request), uuid_field("hold_id", request.hold_id), cause(request))


def reassign(request: pb.ReassignUnitsRequest) -> ReassignUnits:
    company_id = company(request)
    unit_ids = _unit_ids(r.unit_id for r in request.reassignments)
    named = assignees(r.assignee for r in request.reassignments)
    return ReassignUnits(company_id, tuple(zip(unit_ids, named, strict=True)), cause(request))


def return_units(request: pb.ReturnUnitsRequest, terms: Terms) -> ReturnUnits:
    return ReturnUnits(company(request), _unit_ids(request.unit_ids), terms.grace, cause(request))


def terminate(request: pb.TerminateUnitsRequest) -> TerminateUnits:
    return TerminateUnits(company(request), _unit_ids(request.unit_ids), cause(request))


def enable_pool(request: pb.EnablePoolRequest) -> EnablePool:
    return EnablePool(
        company(request), currency_field("currency", request.currency), cause(request)
    )


def _instant(message: Timestamp) -> datetime:
    """A Timestamp the request checks accepted, as an aware datetime (microseconds)."""
    return message.ToDatetime(tzinfo=UTC)


def as_of(request: pb.GetSnapshotRequest) -> datetime | None:
    """The past instant a snapshot is asked for, or None for now."""
    return _instant(request.as_of_time) if request.HasField("as_of_time") else None


def list_unit_events(request: pb.ListUnitEventsRequest) -> EventQuery:
    company_id = company(request)
    start = _instant(request.start_time) if request.HasField("start_time") else None
    end = _instant(request.end_time) if request.HasField("end_time") else None
    if start is not None and end is not None and end < start:
        raise invalid("end_time", "is before start_time")
    return EventQuery(
        company_id=company_id,
        unit_id=optional_uuid_field("unit_id", request.unit_id),
        office_id=optional_uuid_field("office_id", request.office_id),
        start=start,
        end=end,
        after=paging.time_and(request.page_token, int),
        page_size=paging.page_size(request.page_size),
    )


def availability_query(request: pb.GetAvailabilityRequest) -> GetAvailability:
    return GetAvailability(
        company(request),
        uuid_field("office_id", request.office_id),
        tuple(license_type(f"license_types[{i}]", c) for i, c in enumerate(request.license_types)),
    )


def list_offices(request: pb.ListOfficesRequest) -> ListOffices:
    company_id = company(request)
    size = paging.page_size(request.page_size)
    return ListOffices(
        company_id,
        optional_currency_field("currency", request.currency),
        paging.single_key(request.page_token, paging.key_uuid),
        size,
    )


def list_units(request: pb.ListUnitsRequest) -> ListUnits:
    company_id = company(request)
    size = paging.page_size(request.page_size)
    after = paging.time_key(request.page_token)
    state = _STATES.get(request.state) if request.state else None
    if request.state and state is None:
        raise invalid("state", f"unknown state {request.state}")
    return ListUnits(
        company_id,
        optional_uuid_field("office_id", request.office_id),
        optional_currency_field("currency", request.currency),
        license_type("license_type", request.license_type) if request.license_type else None,
        state,
        after,
        size,
    )


# --- domain -> messages -------------------------------------------------------------------


def office_pb(office: Office) -> pb.Office:
    return pb.Office(
        company_id=str(office.company_id),
        office_id=str(office.office_id),
        currency=office.currency,
        plan_kind=_PLAN_KIND_PB[office.plan_kind],
        primary=office.primary,
        display_name=office.display_name,
        create_time=timestamp(office.created_at),
    )


def unit_pb(unit: Unit) -> pb.Unit:
    message = pb.Unit(
        unit_id=str(unit.unit_id),
        company_id=str(unit.company_id),
        office_id=str(unit.office_id),
        currency=unit.currency,
        license_type=unit.license_type,
        state=_STATE_PB[unit.state],
        claimable_at=timestamp(unit.claimable_at),
        returned_by_office_id=str(unit.office_id) if unit.state is UnitState.POOLED else "",
        hold_id=str(unit.hold_id) if unit.hold_id else "",
        held_from_state=_STATE_PB[unit.held_from] if unit.held_from else pb.UNIT_STATE_UNSPECIFIED,
        create_time=timestamp(unit.created_at),
        update_time=timestamp(unit.updated_at),
    )
    if unit.assignee is not None:
        message.assignee.kind = _ASSIGNEE_KIND_PB.get(
            unit.assignee.kind, pb.ASSIGNEE_KIND_UNSPECIFIED
        )
        message.assignee.id = unit.assignee.id
    return message


def receipt_pb(receipt: Receipt) -> pb.Receipt:
    return pb.Receipt(
        receipt_id=str(receipt.receipt_id) if receipt.receipt_id else "",
        company_id=str(receipt.company_id),
        office_id=str(receipt.office_id),
        currency=receipt.currency,
        license_type=receipt.license_type,
        requested=receipt.requested,
        taken=[
            pb.SourceTake(
                source=_SOURCE_PB[t.source],
                quantity=len(t.unit_ids),
                unit_ids=[str(u) for u in t.unit_ids],
            )
            for t in receipt.taken
        ],
        shortfall=receipt.shortfall,
        passed_over=[
            pb.PassedOver(
                reason=pb.PassOverReason.Value(f"PASS_OVER_REASON_{p.reason.value}"),
                quantity=p.quantity,
                earliest_claimable_at=timestamp(p.earliest_claimable_at),
            )
            for p in receipt.passed_over
        ],
        hold_id=str(receipt.hold_id) if receipt.hold_id else "",
        create_time=timestamp(receipt.created_at),
    )


def hold_pb(hold: Hold) -> pb.Hold:
    return pb.Hold(
        hold_id=str(hold.hold_id),
        company_id=str(hold.company_id),
        office_id=str(hold.office_id),
        license_type=hold.license_type,
        state=pb.HoldState.Value(f"HOLD_STATE_{hold.state.value}"),
        unit_ids=[str(u) for u in hold.unit_ids],
        expire_time=timestamp(hold.expires_at),
        receipt_id=str(hold.receipt_id),
        create_time=timestamp(hold.created_at),
        resolve_time=timestamp(hold.resolved_at),
    )


def pool_pb(pool: Pool) -> pb.Pool:
    return pb.Pool(
        company_id=str(pool.company_id),
        currency=pool.currency,
        enabled=pool.enabled,
        enable_time=timestamp(pool.enabled_at),
    )


def allocated(result: Allocated) -> bytes:
    """The Acquire or Reserve response of an allocation, encoded (the batch stores and
    sends these bytes)."""
    message: Message
    if result.reserved:
        message = pb.ReserveResponse(
            hold=hold_pb(result.hold) if result.hold else None,
            receipt=receipt_pb(result.receipt),
        )
    else:
        message = pb.AcquireResponse(
            units=[unit_pb(u) for u in result.units], receipt=receipt_pb(result.receipt)
        )
    return message.SerializeToString()


UnitsResponse = TypeVar(
    "UnitsResponse",
    pb.AddUnitsResponse,
    pb.MarkForRemovalResponse,
    pb.RestoreFromRemovalResponse,
    pb.ReassignUnitsResponse,
    pb.ReturnUnitsResponse,
    pb.TerminateUnitsResponse,
)


def units_response(response: type[UnitsResponse]) -> Callable[[Sequence[Unit]], UnitsResponse]:
    """The encoder of a response that is the units a call changed."""

    def encode(units: Sequence[Unit]) -> UnitsResponse:
        return response(units=[unit_pb(u) for u in units])

    return encode


added = units_response(pb.AddUnitsResponse)
marked = units_response(pb.MarkForRemovalResponse)
restored = units_response(pb.RestoreFromRemovalResponse)
reassigned = units_response(pb.ReassignUnitsResponse)
returned = units_response(pb.ReturnUnitsResponse)
terminated = units_response(pb.TerminateUnitsResponse)


def put_office_response(office: Office) -> pb.PutOfficeResponse:
    return pb.PutOfficeResponse(office=office_pb(office))


def enabled_response(result: Enabled) -> pb.EnablePoolResponse:
    moved = Counter((u.office_id, u.license_type) for u in result.moved)
    return pb.EnablePoolResponse(
        pool=pool_pb(result.pool),
        moved=[
            pb.MovedUnits(office_id=str(office), license_type=code, quantity=n)
            for (office, code), n in sorted(moved.items())
        ],
        moved_total=len(result.moved),
        office_ids=[str(o) for o in result.office_ids],
    )


def committed_response(result: Committed) -> pb.CommitResponse:
    return pb.CommitResponse(hold=hold_pb(result.hold), units=[unit_pb(u) for u in result.units])


def released_response(hold: Hold) -> pb.ReleaseResponse:
    return pb.ReleaseResponse(hold=hold_pb(hold))


def pool_response(pool: Pool, contents: Sequence[PoolContent]) -> pb.GetPoolResponse:
    return pb.GetPoolResponse(
        pool=pool_pb(pool),
        contents=[
            pb.PoolContent(license_type=c.license_type, claimable=c.claimable, in_grace=c.in_grace)
            for c in contents
        ],
    )


def availability_response(
    now: datetime, found: Sequence[Availability]
) -> pb.GetAvailabilityResponse:
    return pb.GetAvailabilityResponse(
        availability=[
            pb.Availability(
                license_type=a.license_type,
                own_spare=a.own_spare,
                own_returns_in_grace=a.own_in_grace,
                pool_claimable=a.pool_claimable,
                removal_scheduled=a.removal_scheduled,
            )
            for a in found
        ],
        as_of_time=timestamp(now),
    )


def snapshot_response(snapshot: Snapshot) -> pb.GetSnapshotResponse:
    return pb.GetSnapshotResponse(
        snapshot_time=timestamp(snapshot.taken_at),
        office_lines=[
            pb.OfficeLine(
                office_id=str(line.office_id),
                currency=line.currency,
                license_type=line.license_type,
                assigned=line.counts.get(UnitState.ASSIGNED, 0),
                spare=line.counts.get(UnitState.SPARE, 0),
                held=line.counts.get(UnitState.HELD, 0),
                removal_scheduled=line.counts.get(UnitState.REMOVAL_SCHEDULED, 0),
            )
            for line in snapshot.office_lines
        ],
        pool_lines=[
            pb.PoolLine(
                currency=p.currency, license_type=p.license_type, pooled=p.pooled, held=p.held
            )
            for p in snapshot.pool_lines
        ],
        live_units=snapshot.live_units,
    )


def _optional_id(value: uuid.UUID | None) -> str:
    return str(value) if value else ""


def unit_event_pb(event: UnitEvent) -> pb.UnitEvent:
    message = pb.UnitEvent(
        event_id=event.event_id,
        unit_id=str(event.unit_id),
        occur_time=timestamp(event.occurred_at),
        kind=pb.UnitEventKind.Value(f"UNIT_EVENT_KIND_{event.kind.value}"),
        state=_STATE_PB[event.state],
        office_id=str(event.office_id),
        held_from_state=_STATE_PB[event.held_from]
        if event.held_from
        else pb.UNIT_STATE_UNSPECIFIED,
        for_office_id=_optional_id(event.for_office_id),
        source=_SOURCE_PB[event.source] if event.source else pb.ALLOCATION_SOURCE_UNSPECIFIED,
        claimable_at=timestamp(event.claimable_at),
        hold_id=_optional_id(event.hold_id),
        receipt_id=_optional_id(event.receipt_id),
        request_id=event.request_id or "",
        origin=event.origin or "",
    )
    if event.assignee is not None:
        message.assignee.kind = _ASSIGNEE_KIND_PB.get(
            event.assignee.kind, pb.ASSIGNEE_KIND_UNSPECIFIED
        )
        message.assignee.id = event.assignee.id
    return message


def unit_events_page(events: Sequence[UnitEvent], size: int) -> pb.ListUnitEventsResponse:
    """A page of `size` from `size + 1` events, with the next page's token."""
    page, token = next_page_token(
        events, size, lambda e: paging.encode_token([e.occurred_at.isoformat(), e.event_id])
    )
    return pb.ListUnitEventsResponse(events=[unit_event_pb(e) for e in page], next_page_token=token)


def offices_page(offices: Sequence[Office], size: int) -> pb.ListOfficesResponse:
    """A page of `size` from `size + 1` offices, with the next page's token."""
    page, token = next_page_token(offices, size, lambda o: paging.encode_token([str(o.office_id)]))
    return pb.ListOfficesResponse(offices=[office_pb(o) for o in page], next_page_token=token)


def units_page(units: Sequence[Unit], size: int) -> pb.ListUnitsResponse:
    """A page of `size` from `size + 1` units, with the next page's token."""
    page, token = next_page_token(
        units, size, lambda u: paging.time_key_token(u.created_at, u.unit_id)
    )
    return pb.ListUnitsResponse(units=[unit_pb(u) for u in page], next_page_token=token)
