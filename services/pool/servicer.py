"""PoolService over gRPC: proto ⇄ domain translation and field validation only."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from libs.common import paging
from libs.common.errors import invalid
from libs.common.idempotency import Once, key_for
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
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.domain import errors
from services.pool.domain.model import (
    Assignee,
    Hold,
    Office,
    PlanKind,
    Pool,
    Receipt,
    Source,
    Unit,
    UnitState,
)
from services.pool.service import (
    Allocate,
    Allocated,
    Committed,
    EnableResult,
    PoolService,
    Snapshot,
    check_assignees,
)

OfficeUnitsRequest = pb.AddUnitsRequest | pb.MarkForRemovalRequest | pb.RestoreFromRemovalRequest
M = TypeVar("M", pb.AddUnitsResponse, pb.MarkForRemovalResponse, pb.RestoreFromRemovalResponse)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PoolService"].full_name

_PLAN_KINDS: dict[pb.PlanKind.ValueType, PlanKind] = {
    pb.PLAN_KIND_BUNDLE: PlanKind.BUNDLE,
    pb.PLAN_KIND_LEGACY: PlanKind.LEGACY,
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


# --- domain -> proto ----------------------------------------------------------------------


def office_pb(office: Office) -> pb.Office:
    return pb.Office(
        company_id=str(office.company_id),
        office_id=str(office.office_id),
        currency=office.currency,
        plan_kind=_PLAN_KIND_PB[office.plan_kind],
        primary=office.primary,
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


def snapshot_pb(snapshot: Snapshot) -> pb.GetSnapshotResponse:
    return pb.GetSnapshotResponse(
        snapshot_time=timestamp(snapshot.taken_at),
        office_lines=[
            pb.OfficeLine(
                office_id=str(line.office_id),
                currency=line.currency,
                license_type=line.license_type,
                assigned=line.counts.get(UnitState.ASSIGNED.value, 0),
                spare=line.counts.get(UnitState.SPARE.value, 0),
                held=line.counts.get(UnitState.HELD.value, 0),
                removal_scheduled=line.counts.get(UnitState.REMOVAL_SCHEDULED.value, 0),
            )
            for line in snapshot.office_lines
        ],
        pool_lines=[
            pb.PoolLine(currency=c, license_type=t, pooled=p, held=h)
            for c, t, p, h in snapshot.pool_lines
        ],
        live_units=snapshot.live_units,
    )


def _allocated_response(
    response: type[pb.AcquireResponse] | type[pb.ReserveResponse],
) -> Callable[[Allocated], bytes]:
    def encode(result: Allocated) -> bytes:
        if response is pb.ReserveResponse:
            message: Message = pb.ReserveResponse(
                hold=hold_pb(result.hold) if result.hold else None,
                receipt=receipt_pb(result.receipt),
            )
        else:
            message = pb.AcquireResponse(
                units=[unit_pb(u) for u in result.units], receipt=receipt_pb(result.receipt)
            )
        return message.SerializeToString()

    return encode


# --- proto -> domain ----------------------------------------------------------------------


def _assignees(items: Iterable[pb.Assignee]) -> tuple[Assignee, ...]:
    result = []
    for index, item in enumerate(items):
        kind = _ASSIGNEE_KINDS.get(item.kind)
        if kind is None:
            raise invalid(f"assignees[{index}].kind", "is required")
        result.append(Assignee(kind, text_field(f"assignees[{index}].id", item.id)))
    return tuple(result)


def _sources(values: Iterable[int]) -> frozenset[Source]:
    result = set()
    for value in values:
        if value not in _SOURCES:
            raise invalid("sources", f"unknown allocation source {value}")
        result.add(_SOURCES[value])  # type: ignore[index]
    return frozenset(result)


def _method(name: str) -> str:
    return f"/{SERVICE_NAME}/{name}"


def _time_remaining(context: grpc.aio.ServicerContext) -> float | None:
    remaining: float | None = context.time_remaining()
    return remaining


class PoolServicer(pool_pb2_grpc.PoolServiceServicer):
    def __init__(self, service: PoolService) -> None:
        self._service = service

    async def PutOffice(
        self, request: pb.PutOfficeRequest, context: grpc.aio.ServicerContext
    ) -> pb.PutOfficeResponse:
        o = request.office
        company_id = uuid_field("office.company_id", o.company_id)
        office = Office(
            company_id=company_id,
            office_id=uuid_field("office.office_id", o.office_id),
            currency=currency_field("office.currency", o.currency),
            plan_kind=_plan_kind(o.plan_kind),
            primary=o.primary,
        )
        once: Once[Office] = Once(
            key_for(_method("PutOffice"), company_id, request),
            lambda r: pb.PutOfficeResponse(office=office_pb(r)).SerializeToString(),
        )
        return pb.PutOfficeResponse.FromString(await self._service.put_office(office, once))

    async def GetOffice(
        self, request: pb.GetOfficeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOfficeResponse:
        office = await self._service.get_office(
            uuid_field("company_id", request.company_id), uuid_field("office_id", request.office_id)
        )
        return pb.GetOfficeResponse(office=office_pb(office))

    async def ListOffices(
        self, request: pb.ListOfficesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOfficesResponse:
        company_id = uuid_field("company_id", request.company_id)
        size = paging.page_size(request.page_size)
        token = paging.decode_token(request.page_token)
        after = _token_uuid(token[0]) if token else None
        offices = await self._service.list_offices(
            company_id, optional_currency_field("currency", request.currency), after, size + 1
        )
        next_token = (
            paging.encode_token([str(offices[size - 1].office_id)]) if len(offices) > size else ""
        )
        return pb.ListOfficesResponse(
            offices=[office_pb(o) for o in offices[:size]], next_page_token=next_token
        )

    async def AddUnits(
        self, request: pb.AddUnitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddUnitsResponse:
        return await self._office_units(
            request, "AddUnits", pb.AddUnitsResponse, self._service.add_units
        )

    async def EnablePool(
        self, request: pb.EnablePoolRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnablePoolResponse:
        company_id = uuid_field("company_id", request.company_id)
        currency = currency_field("currency", request.currency)

        def encode(result: EnableResult) -> bytes:
            moved = Counter((u.office_id, u.license_type) for u in result.moved)
            return pb.EnablePoolResponse(
                pool=pool_pb(result.pool),
                moved=[
                    pb.MovedUnits(office_id=str(office), license_type=code, quantity=n)
                    for (office, code), n in sorted(moved.items())
                ],
                moved_total=len(result.moved),
                office_ids=[str(o) for o in result.office_ids],
            ).SerializeToString()

        once = Once(key_for(_method("EnablePool"), company_id, request), encode)
        encoded = await self._service.enable_pool(company_id, currency, request.validate_only, once)
        return pb.EnablePoolResponse.FromString(encoded)

    async def DisablePool(
        self, request: pb.DisablePoolRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisablePoolResponse:
        company_id = uuid_field("company_id", request.company_id)
        await self._service.disable_pool(company_id, currency_field("currency", request.currency))
        return pb.DisablePoolResponse()

    async def GetAvailability(
        self, request: pb.GetAvailabilityRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAvailabilityResponse:
        codes = [
            license_type_field(f"license_types[{i}]", code).code
            for i, code in enumerate(request.license_types)
        ]
        now, found = await self._service.availability(
            uuid_field("company_id", request.company_id),
            uuid_field("office_id", request.office_id),
            codes,
        )
        return pb.GetAvailabilityResponse(
            availability=[
                pb.Availability(
                    license_type=code,
                    own_spare=spare,
                    own_returns_in_grace=in_grace,
                    pool_claimable=claimable,
                    removal_scheduled=scheduled,
                )
                for code, (spare, in_grace, claimable, scheduled) in found.items()
            ],
            as_of_time=timestamp(now),
        )

    async def GetPool(
        self, request: pb.GetPoolRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPoolResponse:
        pool, contents = await self._service.get_pool(
            uuid_field("company_id", request.company_id),
            currency_field("currency", request.currency),
        )
        return pb.GetPoolResponse(
            pool=pool_pb(pool),
            contents=[
                pb.PoolContent(license_type=t, claimable=c, in_grace=g) for t, c, g in contents
            ],
        )

    async def Reserve(
        self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveResponse:
        company_id = uuid_field("company_id", request.company_id)
        command = Allocate(
            company_id=company_id,
            office_id=uuid_field("office_id", request.office_id),
            license_type=license_type_field("license_type", request.license_type).code,
            quantity=quantity_field("quantity", request.quantity),
            sources=_sources(request.sources),
            hold_ttl=self._service.hold_ttl(request.ttl_seconds),
            allow_partial=request.allow_partial,
        )
        once = Once(
            key_for(_method("Reserve"), company_id, request),
            _allocated_response(pb.ReserveResponse),
        )
        encoded = await self._allocate(command, once, context)
        return pb.ReserveResponse.FromString(encoded)

    async def Acquire(
        self, request: pb.AcquireRequest, context: grpc.aio.ServicerContext
    ) -> pb.AcquireResponse:
        company_id = uuid_field("company_id", request.company_id)
        quantity = quantity_field("quantity", request.quantity)
        assignees = _assignees(request.assignees)
        check_assignees(quantity, assignees)
        command = Allocate(
            company_id=company_id,
            office_id=uuid_field("office_id", request.office_id),
            license_type=license_type_field("license_type", request.license_type).code,
            quantity=quantity,
            sources=_sources(request.sources),
            assignees=assignees,
        )
        once = Once(
            key_for(_method("Acquire"), company_id, request),
            _allocated_response(pb.AcquireResponse),
        )
        encoded = await self._allocate(command, once, context)
        return pb.AcquireResponse.FromString(encoded)

    async def _allocate(
        self, command: Allocate, once: Once[Allocated], context: grpc.aio.ServicerContext
    ) -> bytes:
        try:
            return await self._service.allocate(command, once, _time_remaining(context))
        except errors.NoLicenseAvailable as error:
            error.details = (receipt_pb(error.receipt),)
            raise

    async def _office_units(
        self,
        request: OfficeUnitsRequest,
        method: str,
        response_type: type[M],
        use_case: Callable[[uuid.UUID, uuid.UUID, str, int, Once[list[Unit]]], Awaitable[bytes]],
    ) -> M:
        """The shape AddUnits, MarkForRemoval and RestoreFromRemoval share: N units of a
        type for an office, answered with the units."""
        company_id = uuid_field("company_id", request.company_id)
        office_id = uuid_field("office_id", request.office_id)
        code = license_type_field("license_type", request.license_type).code
        quantity = quantity_field("quantity", request.quantity)
        once: Once[list[Unit]] = Once(
            key_for(_method(method), company_id, request),
            lambda units: response_type(units=[unit_pb(u) for u in units]).SerializeToString(),
        )
        return response_type.FromString(await use_case(company_id, office_id, code, quantity, once))

    async def Commit(
        self, request: pb.CommitRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommitResponse:
        company_id = uuid_field("company_id", request.company_id)
        hold_id = uuid_field("hold_id", request.hold_id)
        assignees = _assignees(request.assignees)
        check_assignees(len(assignees), assignees)

        def encode(result: Committed) -> bytes:
            return pb.CommitResponse(
                hold=hold_pb(result.hold), units=[unit_pb(u) for u in result.units]
            ).SerializeToString()

        once = Once(key_for(_method("Commit"), company_id, request), encode)
        encoded = await self._service.commit(company_id, hold_id, assignees, once)
        return pb.CommitResponse.FromString(encoded)

    async def Release(
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        company_id = uuid_field("company_id", request.company_id)
        hold_id = uuid_field("hold_id", request.hold_id)
        once: Once[Hold] = Once(
            key_for(_method("Release"), company_id, request),
            lambda hold: pb.ReleaseResponse(hold=hold_pb(hold)).SerializeToString(),
        )
        return pb.ReleaseResponse.FromString(await self._service.release(company_id, hold_id, once))

    async def GetHold(
        self, request: pb.GetHoldRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetHoldResponse:
        hold = await self._service.get_hold(
            uuid_field("company_id", request.company_id), uuid_field("hold_id", request.hold_id)
        )
        return pb.GetHoldResponse(hold=hold_pb(hold))

    async def ReassignUnits(
        self, request: pb.ReassignUnitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReassignUnitsResponse:
        company_id = uuid_field("company_id", request.company_id)
        unit_ids = _unit_ids(r.unit_id for r in request.reassignments)
        assignees = _assignees(r.assignee for r in request.reassignments)
        once: Once[list[Unit]] = Once(
            key_for(_method("ReassignUnits"), company_id, request),
            lambda units: pb.ReassignUnitsResponse(
                units=[unit_pb(u) for u in units]
            ).SerializeToString(),
        )
        encoded = await self._service.reassign_units(
            company_id, list(zip(unit_ids, assignees, strict=True)), once
        )
        return pb.ReassignUnitsResponse.FromString(encoded)

    async def ReturnUnits(
        self, request: pb.ReturnUnitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReturnUnitsResponse:
        company_id = uuid_field("company_id", request.company_id)
        unit_ids = _unit_ids(request.unit_ids)
        once: Once[list[Unit]] = Once(
            key_for(_method("ReturnUnits"), company_id, request),
            lambda units: pb.ReturnUnitsResponse(
                units=[unit_pb(u) for u in units]
            ).SerializeToString(),
        )
        encoded = await self._service.return_units(company_id, unit_ids, once)
        return pb.ReturnUnitsResponse.FromString(encoded)

    async def MarkForRemoval(
        self, request: pb.MarkForRemovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkForRemovalResponse:
        return await self._office_units(
            request, "MarkForRemoval", pb.MarkForRemovalResponse, self._service.mark_for_removal
        )

    async def RestoreFromRemoval(
        self, request: pb.RestoreFromRemovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestoreFromRemovalResponse:
        return await self._office_units(
            request,
            "RestoreFromRemoval",
            pb.RestoreFromRemovalResponse,
            self._service.restore_from_removal,
        )

    async def TerminateUnits(
        self, request: pb.TerminateUnitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.TerminateUnitsResponse:
        company_id = uuid_field("company_id", request.company_id)
        unit_ids = _unit_ids(request.unit_ids)
        once: Once[list[Unit]] = Once(
            key_for(_method("TerminateUnits"), company_id, request),
            lambda units: pb.TerminateUnitsResponse(
                units=[unit_pb(u) for u in units]
            ).SerializeToString(),
        )
        encoded = await self._service.terminate_units(company_id, unit_ids, once)
        return pb.TerminateUnitsResponse.FromString(encoded)

    async def GetSnapshot(
        self, request: pb.GetSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSnapshotResponse:
        snapshot = await self._service.snapshot(
            uuid_field("company_id", request.company_id),
            optional_currency_field("currency", request.currency),
        )
        return snapshot_pb(snapshot)

    async def ListUnits(
        self, request: pb.ListUnitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUnitsResponse:
        company_id = uuid_field("company_id", request.company_id)
        size = paging.page_size(request.page_size)
        after = paging.time_key(request.page_token)
        state = _STATES.get(request.state) if request.state else None
        if request.state and state is None:
            raise invalid("state", f"unknown state {request.state}")
        units = await self._service.list_units(
            company_id,
            optional_uuid_field("office_id", request.office_id),
            optional_currency_field("currency", request.currency),
            license_type_field("license_type", request.license_type).code
            if request.license_type
            else None,
            state,
            after,
            size + 1,
        )
        next_token = ""
        if len(units) > size:
            last = units[size - 1]
            next_token = paging.time_key_token(last.created_at, last.unit_id)
        return pb.ListUnitsResponse(
            units=[unit_pb(u) for u in units[:size]], next_page_token=next_token
        )

    async def GetUnit(
        self, request: pb.GetUnitRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUnitResponse:
        unit = await self._service.get_unit(
            uuid_field("company_id", request.company_id), uuid_field("unit_id", request.unit_id)
        )
        return pb.GetUnitResponse(unit=unit_pb(unit))

    async def GetReceipt(
        self, request: pb.GetReceiptRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReceiptResponse:
        receipt = await self._service.get_receipt(
            uuid_field("company_id", request.company_id),
            uuid_field("receipt_id", request.receipt_id),
        )
        return pb.GetReceiptResponse(receipt=receipt_pb(receipt))


def _plan_kind(value: pb.PlanKind.ValueType) -> PlanKind:
    kind = _PLAN_KINDS.get(value)
    if kind is None:
        raise invalid("office.plan_kind", "must be PLAN_KIND_BUNDLE or PLAN_KIND_LEGACY")
    return kind


def _unit_ids(values: Iterable[str]) -> list[uuid.UUID]:
    unit_ids = [uuid_field(f"unit_ids[{i}]", u) for i, u in enumerate(values)]
    if not unit_ids:
        raise invalid("unit_ids", "is required", "MISSING_FIELD")
    quantity_field("unit_ids", len(unit_ids))
    if len(set(unit_ids)) != len(unit_ids):
        raise invalid("unit_ids", "lists a unit twice")
    return unit_ids


def _token_uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise invalid("page_token", "is not a token this service issued") from None
