"""The pool's gRPC handlers: check the request and build the command (`convert`), run the
use case, convert the result.

Mutating calls answer encoded bytes (`handlers.once` stores them with the effect; the
allocation batch encodes its own), which the server sends as they are. The generated
`PoolServiceServicer` base class is not inherited: its methods are typed to answer
messages, and registration only needs the method names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from libs.common.event_stream import EventStream
from libs.common.handlers import mutation, once_for
from libs.common.validation import currency_field, optional_currency_field, uuid_field
from licensing.pool.v1 import pool_pb2 as pb
from services.pool.api import convert
from services.pool.domain.errors import HoldLapsed, NoLicenseAvailable
from services.pool.domain.model import Terms
from services.pool.unit_of_work import PoolUnitOfWork
from services.pool.use_cases import allocation, history, holds, offices, pools, units
from services.pool.use_cases.allocation import Allocate, Allocator
from services.pool.use_cases.holds import HoldExpiry
from services.pool.use_cases.offices import OfficeDirectory

Context: TypeAlias = grpc.aio.ServicerContext


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PoolService"].full_name


class PoolServicer:
    def __init__(
        self,
        uow: PoolUnitOfWork,
        terms: Terms,
        directory: OfficeDirectory,
        allocator: Allocator,
        expiry: HoldExpiry,
        events: EventStream,
    ) -> None:
        self._uow = uow
        self._terms = terms
        self._directory = directory
        self._allocator = allocator
        self._expiry = expiry
        self._events = events

    # --- offices ----------------------------------------------------------------------

    async def PutOffice(self, request: pb.PutOfficeRequest, context: Context) -> bytes:
        office = convert.office(request)
        response = await once_for(
            self._uow, request, office, offices.put_office, convert.put_office_response
        )
        self._directory.forget(office.company_id, office.office_id)  # routed anew
        return response

    async def GetOffice(
        self, request: pb.GetOfficeRequest, context: Context
    ) -> pb.GetOfficeResponse:
        company_id = convert.company(request)
        office_id = uuid_field("office_id", request.office_id)
        office = await offices.get_office(self._uow, company_id, office_id)
        return pb.GetOfficeResponse(office=convert.office_pb(office))

    async def ListOffices(
        self, request: pb.ListOfficesRequest, context: Context
    ) -> pb.ListOfficesResponse:
        query = convert.list_offices(request)
        found = await offices.list_offices(self._uow, query)
        return convert.offices_page(found, query.page_size)

    # --- units ------------------------------------------------------------------------

    async def AddUnits(self, request: pb.AddUnitsRequest, context: Context) -> bytes:
        command = convert.add_units(request)
        keyed = convert.without_origin(request)
        response = await once_for(self._uow, keyed, command, units.add_units, convert.added)
        await units.refresh_statistics(self._uow, changed=command.quantity)
        return response

    MarkForRemoval = mutation(convert.office_units, units.mark_for_removal, convert.marked)

    RestoreFromRemoval = mutation(
        convert.office_units, units.restore_from_removal, convert.restored
    )

    ReassignUnits = mutation(convert.reassign, units.reassign_units, convert.reassigned)

    async def ReturnUnits(self, request: pb.ReturnUnitsRequest, context: Context) -> bytes:
        command = convert.return_units(request, self._terms)
        return await once_for(self._uow, request, command, units.return_units, convert.returned)

    TerminateUnits = mutation(convert.terminate, units.terminate_units, convert.terminated)

    async def GetUnit(self, request: pb.GetUnitRequest, context: Context) -> pb.GetUnitResponse:
        company_id = convert.company(request)
        unit = await units.get_unit(self._uow, company_id, uuid_field("unit_id", request.unit_id))
        return pb.GetUnitResponse(unit=convert.unit_pb(unit))

    async def ListUnits(
        self, request: pb.ListUnitsRequest, context: Context
    ) -> pb.ListUnitsResponse:
        query = convert.list_units(request)
        return convert.units_page(await units.list_units(self._uow, query), query.page_size)

    async def GetSnapshot(
        self, request: pb.GetSnapshotRequest, context: Context
    ) -> pb.GetSnapshotResponse:
        company_id = convert.company(request)
        currency = optional_currency_field("currency", request.currency)
        as_of = convert.as_of(request)
        if as_of is None:
            snapshot = await units.snapshot(self._uow, company_id, currency)
        else:
            snapshot = await history.snapshot_as_of(
                self._uow, company_id, currency, as_of, self._terms.history_retention
            )
        return convert.snapshot_response(snapshot)

    async def ListUnitEvents(
        self, request: pb.ListUnitEventsRequest, context: Context
    ) -> pb.ListUnitEventsResponse:
        query = convert.list_unit_events(request)
        found = await history.list_events(self._uow, query)
        return convert.unit_events_page(found, query.page_size)

    # --- pools ------------------------------------------------------------------------

    async def EnablePool(
        self, request: pb.EnablePoolRequest, context: Context
    ) -> bytes | pb.EnablePoolResponse:
        command = convert.enable_pool(request)
        if request.validate_only:  # a preview: nothing to remember
            return convert.enabled_response(await pools.preview_enable(self._uow, command))
        response = await once_for(
            self._uow, request, command, pools.enable_pool, convert.enabled_response
        )
        await units.refresh_statistics(self._uow)
        return response

    async def PreviewEnablePool(
        self, request: pb.PreviewEnablePoolRequest, context: Context
    ) -> pb.PreviewEnablePoolResponse:
        command = pools.EnablePool(
            convert.company(request), currency_field("currency", request.currency)
        )
        preview = await pools.preview_enable(self._uow, command)
        return pb.PreviewEnablePoolResponse(preview=convert.enabled_response(preview))

    async def DisablePool(
        self, request: pb.DisablePoolRequest, context: Context
    ) -> pb.DisablePoolResponse:
        company_id = convert.company(request)
        currency = currency_field("currency", request.currency)
        await pools.disable_pool(self._uow, company_id, currency)
        return pb.DisablePoolResponse()  # not reached: disabling is always refused

    async def GetPool(self, request: pb.GetPoolRequest, context: Context) -> pb.GetPoolResponse:
        company_id = convert.company(request)
        currency = currency_field("currency", request.currency)
        pool, contents = await pools.get_pool(self._uow, company_id, currency)
        return convert.pool_response(pool, contents)

    async def GetAvailability(
        self, request: pb.GetAvailabilityRequest, context: Context
    ) -> pb.GetAvailabilityResponse:
        query = convert.availability_query(request)
        now, found = await pools.availability(self._uow, query)
        return convert.availability_response(now, found)

    # --- allocation and holds ---------------------------------------------------------

    async def Acquire(self, request: pb.AcquireRequest, context: Context) -> bytes:
        return await self._allocate(convert.acquire(request))

    async def Reserve(self, request: pb.ReserveRequest, context: Context) -> bytes:
        return await self._allocate(convert.reserve(request, self._terms))

    async def _allocate(self, command: Allocate) -> bytes:
        try:
            return await self._allocator.allocate(command)
        except NoLicenseAvailable as error:
            error.details = (convert.receipt_pb(error.receipt),)
            raise

    async def Commit(self, request: pb.CommitRequest, context: Context) -> bytes:
        command = convert.commit(request)
        try:
            return await once_for(
                self._uow, request, command, holds.commit, convert.committed_response
            )
        except HoldLapsed as lapsed:  # the commit rolled back: put the units back first
            await self._expiry.expire_lapsed(lapsed)
            raise

    Release = mutation(convert.release, holds.release, convert.released_response)

    async def GetHold(self, request: pb.GetHoldRequest, context: Context) -> pb.GetHoldResponse:
        company_id = convert.company(request)
        hold = await holds.get_hold(self._uow, company_id, uuid_field("hold_id", request.hold_id))
        return pb.GetHoldResponse(hold=convert.hold_pb(hold))

    async def GetReceipt(
        self, request: pb.GetReceiptRequest, context: Context
    ) -> pb.GetReceiptResponse:
        company_id = convert.company(request)
        receipt_id = uuid_field("receipt_id", request.receipt_id)
        receipt = await allocation.get_receipt(self._uow, company_id, receipt_id)
        return pb.GetReceiptResponse(receipt=convert.receipt_pb(receipt))

    # --- events -----------------------------------------------------------------------

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async for message in self._events.watch(request):
            yield message
