"""The pool service, as billing calls it: one typed gateway on the shared peer client
(`libs/common/peer.py`: the caller's deadline minus a margin, retries only for calls that
carry a request_id, the pool's reasons passed on as registered reasons, POOL_UNAVAILABLE
when the pool cannot be reached). It speaks billing's domain objects; `Pool` is what the
use cases need of it (tests give them an in-memory pool, `tests/fakes/billing.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC
from typing import Protocol, TypeVar

from libs.common.errors import DomainError
from libs.common.peer import Gateway
from libs.common.reasons import Reason
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from services.billing.domain.model import (
    Availability,
    Held,
    HoldState,
    OfficeCounts,
    Plan,
    PlanKind,
    PoolCounts,
    PoolEntry,
    PoolPreview,
    ScheduledUnit,
    Snapshot,
)

SERVICE = pb.DESCRIPTOR.services_by_name["PoolService"]
# A purchase takes from the office's own returns in grace, then the pool (never from the
# office's own spare units: those are the office's already).
POOL_SOURCES = (pb.ALLOCATION_SOURCE_OWN_RETURN_IN_GRACE, pb.ALLOCATION_SOURCE_POOL)
_PLAN_KIND = {PlanKind.BUNDLE: pb.PLAN_KIND_BUNDLE, PlanKind.LEGACY: pb.PLAN_KIND_LEGACY}
_HOLD_STATE = {
    pb.HOLD_STATE_PENDING: HoldState.PENDING,
    pb.HOLD_STATE_COMMITTED: HoldState.COMMITTED,
    pb.HOLD_STATE_RELEASED: HoldState.RELEASED,
    pb.HOLD_STATE_EXPIRED: HoldState.EXPIRED,
}
PAGE_SIZE = 1000
# The pool's refusals of EnablePool that a preview reports rather than raises.
ENABLE_REFUSALS = frozenset({Reason.LEGACY_PLAN_IN_CURRENCY.name, Reason.POOL_ALREADY_ENABLED.name})


M = TypeVar("M", pb.AddUnitsRequest, pb.MarkForRemovalRequest, pb.RestoreFromRemovalRequest)
Q = TypeVar("Q")


class _UnitsResponse(Protocol):
    """A pool response that lists units (AddUnits, MarkForRemoval, Commit, ...)."""

    @property
    def units(self) -> Sequence[pb.Unit]: ...


def _office_units(
    request: type[M],
    request_id: str,
    company_id: uuid.UUID,
    office_id: uuid.UUID,
    license_type: str,
    quantity: int,
) -> M:
    """A request for `quantity` units of a type of an office."""
    return request(
        request_id=request_id,
        company_id=str(company_id),
        office_id=str(office_id),
        license_type=license_type,
        quantity=quantity,
    )


def office_kind(plan: Plan) -> pb.PlanKind.ValueType:
    """The plan kind the pool keeps for the plan's office: NONE once it is deactivated."""
    return _PLAN_KIND[plan.kind] if plan.active else pb.PLAN_KIND_NONE


class Pool(Protocol):
    """What billing asks of the pool. Calls with a request_id replay, never repeat."""

    async def put_office(self, request_id: str, plan: Plan) -> None:
        """Tells the pool the office facts of the plan (currency, plan kind, primary); a
        deactivated plan leaves its office without a plan kind (NONE)."""
        ...

    async def pool_enabled(self, company_id: uuid.UUID, currency: str) -> bool: ...

    async def preview_enable(self, company_id: uuid.UUID, currency: str) -> PoolPreview:
        """What enabling the currency's pool would do, or why it would be refused."""
        ...

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str
    ) -> Availability: ...

    async def reserve(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        ttl_seconds: int,
    ) -> Held | None:
        """Holds up to `quantity` from the office's returns in grace and the pool (None:
        nothing was found to hold)."""
        ...

    async def commit(
        self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID
    ) -> tuple[str, ...]: ...

    async def release(self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID) -> None: ...

    async def hold_state(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> HoldState: ...

    async def add_units(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        origin: str = "",
    ) -> tuple[str, ...]: ...

    async def mark_for_removal(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
    ) -> tuple[str, ...]: ...

    async def restore_from_removal(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
    ) -> tuple[str, ...]: ...

    async def terminate_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[str]
    ) -> None: ...

    async def snapshot(self, company_id: uuid.UUID) -> Snapshot: ...

    async def scheduled_for_removal(self, company_id: uuid.UUID) -> list[ScheduledUnit]:
        """Every unit of the company scheduled for removal, with its office and when."""
        ...


class PoolGateway(Gateway[pool_pb2_grpc.PoolServiceStub]):
    """`Pool` over gRPC: licensing.pool.v1.PoolService."""

    stub_type = pool_pb2_grpc.PoolServiceStub
    service = SERVICE
    unavailable = Reason.POOL_UNAVAILABLE

    async def put_office(self, request_id: str, plan: Plan) -> None:
        office = pb.Office(
            company_id=str(plan.company_id),
            office_id=str(plan.office_id),
            currency=plan.currency,
            plan_kind=office_kind(plan),
            primary=plan.primary,
        )
        await self._peer.call(
            self._stub.PutOffice, pb.PutOfficeRequest(request_id=request_id, office=office)
        )

    async def pool_enabled(self, company_id: uuid.UUID, currency: str) -> bool:
        response: pb.GetPoolResponse = await self._peer.call(
            self._stub.GetPool, pb.GetPoolRequest(company_id=str(company_id), currency=currency)
        )
        return response.pool.enabled

    async def preview_enable(self, company_id: uuid.UUID, currency: str) -> PoolPreview:
        try:
            found: pb.PreviewEnablePoolResponse = await self._peer.call(
                self._stub.PreviewEnablePool,
                pb.PreviewEnablePoolRequest(company_id=str(company_id), currency=currency),
            )
        except DomainError as refused:
            if refused.reason not in ENABLE_REFUSALS:
                raise
            return PoolPreview(refusal_reason=refused.reason, refusal_message=refused.message)
        response = found.preview
        return PoolPreview(
            entries=tuple(
                PoolEntry(uuid.UUID(m.office_id), m.license_type, m.quantity)
                for m in response.moved
            ),
            office_ids=tuple(uuid.UUID(o) for o in response.office_ids),
        )

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str
    ) -> Availability:
        response: pb.GetAvailabilityResponse = await self._peer.call(
            self._stub.GetAvailability,
            pb.GetAvailabilityRequest(
                company_id=str(company_id), office_id=str(office_id), license_types=[license_type]
            ),
        )
        for found in response.availability:
            if found.license_type == license_type:
                return Availability(
                    own_spare=found.own_spare,
                    own_returns_in_grace=found.own_returns_in_grace,
                    pool_claimable=found.pool_claimable,
                    removal_scheduled=found.removal_scheduled,
                )
        return Availability()

    async def reserve(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        ttl_seconds: int,
    ) -> Held | None:
        response: pb.ReserveResponse = await self._peer.call(
            self._stub.Reserve,
            pb.ReserveRequest(
                request_id=request_id,
                company_id=str(company_id),
                office_id=str(office_id),
                license_type=license_type,
                quantity=quantity,
                ttl_seconds=ttl_seconds,
                allow_partial=True,
                sources=POOL_SOURCES,
            ),
        )
        if not response.HasField("hold"):
            return None
        return Held(
            hold_id=uuid.UUID(response.hold.hold_id),
            unit_ids=tuple(response.hold.unit_ids),
            expires_at=response.hold.expire_time.ToDatetime(tzinfo=UTC),
            own_returns=sum(
                take.quantity
                for take in response.receipt.taken
                if take.source == pb.ALLOCATION_SOURCE_OWN_RETURN_IN_GRACE
            ),
        )

    async def commit(
        self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID
    ) -> tuple[str, ...]:
        return await self._unit_ids(
            self._stub.Commit,
            pb.CommitRequest(
                request_id=request_id, company_id=str(company_id), hold_id=str(hold_id)
            ),
        )

    async def release(self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID) -> None:
        await self._peer.call(
            self._stub.Release,
            pb.ReleaseRequest(
                request_id=request_id, company_id=str(company_id), hold_id=str(hold_id)
            ),
        )

    async def hold_state(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> HoldState:
        response: pb.GetHoldResponse = await self._peer.call(
            self._stub.GetHold, pb.GetHoldRequest(company_id=str(company_id), hold_id=str(hold_id))
        )
        return _HOLD_STATE.get(response.hold.state, HoldState.PENDING)

    async def add_units(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        origin: str = "",
    ) -> tuple[str, ...]:
        request = _office_units(
            pb.AddUnitsRequest, request_id, company_id, office_id, license_type, quantity
        )
        request.origin = origin
        return await self._unit_ids(self._stub.AddUnits, request)

    async def mark_for_removal(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
    ) -> tuple[str, ...]:
        request = _office_units(
            pb.MarkForRemovalRequest, request_id, company_id, office_id, license_type, quantity
        )
        return await self._unit_ids(self._stub.MarkForRemoval, request)

    async def restore_from_removal(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
    ) -> tuple[str, ...]:
        request = _office_units(
            pb.RestoreFromRemovalRequest, request_id, company_id, office_id, license_type, quantity
        )
        return await self._unit_ids(self._stub.RestoreFromRemoval, request)

    async def _unit_ids(
        self, method: Callable[[Q], Awaitable[_UnitsResponse]], request: Q
    ) -> tuple[str, ...]:
        """The ids of the units a pool call answers with."""
        response = await self._peer.call(method, request)
        return tuple(u.unit_id for u in response.units)

    async def terminate_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[str]
    ) -> None:
        await self._peer.call(
            self._stub.TerminateUnits,
            pb.TerminateUnitsRequest(
                request_id=request_id, company_id=str(company_id), unit_ids=list(unit_ids)
            ),
        )

    async def snapshot(self, company_id: uuid.UUID) -> Snapshot:
        response: pb.GetSnapshotResponse = await self._peer.call(
            self._stub.GetSnapshot, pb.GetSnapshotRequest(company_id=str(company_id))
        )
        return Snapshot(
            taken_at=response.snapshot_time.ToDatetime(tzinfo=UTC),
            offices=tuple(
                OfficeCounts(
                    office_id=uuid.UUID(line.office_id),
                    currency=line.currency,
                    license_type=line.license_type,
                    assigned=line.assigned,
                    spare=line.spare,
                    held=line.held,
                    removal_scheduled=line.removal_scheduled,
                )
                for line in response.office_lines
            ),
            pools=tuple(
                PoolCounts(line.currency, line.license_type, line.pooled, line.held)
                for line in response.pool_lines
            ),
            live_units=response.live_units,
        )

    async def scheduled_for_removal(self, company_id: uuid.UUID) -> list[ScheduledUnit]:
        page = pb.ListUnitsRequest(
            company_id=str(company_id),
            state=pb.UNIT_STATE_REMOVAL_SCHEDULED,
            page_size=PAGE_SIZE,
        )
        found: list[ScheduledUnit] = []
        while True:
            response: pb.ListUnitsResponse = await self._peer.call(self._stub.ListUnits, page)
            found.extend(
                # A REMOVAL_SCHEDULED unit last changed when it was scheduled.
                ScheduledUnit(
                    u.unit_id, uuid.UUID(u.office_id), u.update_time.ToDatetime(tzinfo=UTC)
                )
                for u in response.units
            )
            if not response.next_page_token:
                return found
            page.page_token = response.next_page_token
