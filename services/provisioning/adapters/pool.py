"""The pool service, as provisioning uses it: a typed gateway on `libs.common.peer.Peer`.

The peer gives every call its deadline (what is left of our caller's, less a margin),
retries the calls that carry a request_id (the pool replays them) and names the pool's
refusals with the registered reasons (NO_LICENSE_AVAILABLE keeps its shortfall and its
receipt); a pool that cannot be reached is UNAVAILABLE with POOL_UNAVAILABLE.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC
from typing import Protocol

from libs.common.peer import Gateway
from libs.common.reasons import Reason
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from services.provisioning.domain.peers import (
    AssigneeKind,
    Availability,
    HoldState,
    PoolUnit,
    Reserved,
)

Assignees = Sequence[tuple[AssigneeKind, str]]


class PoolGateway(Protocol):
    """The pool calls provisioning makes (tests use an in-memory pool)."""

    async def reserve(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        ttl_seconds: int,
        allow_partial: bool = True,
    ) -> Reserved:
        """Holds the units; with allow_partial, what is available, the rest being the
        shortfall (otherwise NO_LICENSE_AVAILABLE unless all can be held)."""
        ...

    async def commit(
        self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID, assignees: Assignees
    ) -> list[PoolUnit]:
        """Held units become ASSIGNED: assignees pair with the hold's sorted unit ids."""
        ...

    async def release(self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID) -> None: ...

    async def return_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]: ...

    async def reassign_units(
        self,
        request_id: str,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, AssigneeKind, str]],
    ) -> list[PoolUnit]: ...

    async def terminate_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]: ...

    async def get_unit(self, company_id: uuid.UUID, unit_id: uuid.UUID) -> PoolUnit: ...

    async def hold_state(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> HoldState: ...

    async def check_office(self, company_id: uuid.UUID, office_id: uuid.UUID) -> None:
        """OFFICE_NOT_FOUND unless the pool knows the office."""
        ...

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_types: Sequence[str]
    ) -> Availability:
        """What the office could allocate now, per type (the pool's GetAvailability)."""
        ...

    async def close(self) -> None: ...


def _unit(message: pb.Unit) -> PoolUnit:
    return PoolUnit(
        unit_id=uuid.UUID(message.unit_id),
        license_type=message.license_type,
        office_id=uuid.UUID(message.office_id),
        state=pb.UnitState.Name(message.state).removeprefix("UNIT_STATE_"),
        assignee_id=message.assignee.id,
        currency=message.currency,
        claimable_at=(
            message.claimable_at.ToDatetime(tzinfo=UTC)
            if message.HasField("claimable_at")
            else None
        ),
    )


def _assignees(assignees: Assignees) -> list[pb.Assignee]:
    return [pb.Assignee(kind=int(kind), id=ident) for kind, ident in assignees]  # type: ignore[arg-type]


class GrpcPool(Gateway[pool_pb2_grpc.PoolServiceStub]):
    """`PoolGateway` over the pool's contract."""

    stub_type = pool_pb2_grpc.PoolServiceStub
    service = pb.DESCRIPTOR.services_by_name["PoolService"]
    unavailable = Reason.POOL_UNAVAILABLE

    async def reserve(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        ttl_seconds: int,
        allow_partial: bool = True,
    ) -> Reserved:
        request = pb.ReserveRequest(
            request_id=request_id,
            company_id=str(company_id),
            office_id=str(office_id),
            license_type=license_type,
            quantity=quantity,
            ttl_seconds=ttl_seconds,
            allow_partial=allow_partial,
        )
        response: pb.ReserveResponse = await self._peer.call(self._stub.Reserve, request)
        hold_id = uuid.UUID(response.hold.hold_id) if response.hold.hold_id else None
        units = tuple(sorted(uuid.UUID(u) for u in response.hold.unit_ids))
        sources = tuple(
            pb.AllocationSource.Name(take.source).removeprefix("ALLOCATION_SOURCE_")
            for take in response.receipt.taken
            for _ in range(take.quantity)
        )
        return Reserved(hold_id, units, response.receipt.shortfall, sources)

    async def commit(
        self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID, assignees: Assignees
    ) -> list[PoolUnit]:
        request = pb.CommitRequest(
            request_id=request_id,
            company_id=str(company_id),
            hold_id=str(hold_id),
            assignees=_assignees(assignees),
        )
        response: pb.CommitResponse = await self._peer.call(self._stub.Commit, request)
        return [_unit(u) for u in response.units]

    async def release(self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID) -> None:
        request = pb.ReleaseRequest(
            request_id=request_id, company_id=str(company_id), hold_id=str(hold_id)
        )
        await self._peer.call(self._stub.Release, request)

    async def return_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]:
        if not unit_ids:
            return []
        request = pb.ReturnUnitsRequest(
            request_id=request_id, company_id=str(company_id), unit_ids=[str(u) for u in unit_ids]
        )
        response: pb.ReturnUnitsResponse = await self._peer.call(self._stub.ReturnUnits, request)
        return [_unit(u) for u in response.units]

    async def reassign_units(
        self,
        request_id: str,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, AssigneeKind, str]],
    ) -> list[PoolUnit]:
        request = pb.ReassignUnitsRequest(
            request_id=request_id,
            company_id=str(company_id),
            reassignments=[
                pb.Reassignment(unit_id=str(u), assignee=_assignees([(k, i)])[0])
                for u, k, i in reassignments
            ],
        )
        response: pb.ReassignUnitsResponse = await self._peer.call(
            self._stub.ReassignUnits, request
        )
        return [_unit(u) for u in response.units]

    async def terminate_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]:
        request = pb.TerminateUnitsRequest(
            request_id=request_id, company_id=str(company_id), unit_ids=[str(u) for u in unit_ids]
        )
        response: pb.TerminateUnitsResponse = await self._peer.call(
            self._stub.TerminateUnits, request
        )
        return [_unit(u) for u in response.units]

    async def get_unit(self, company_id: uuid.UUID, unit_id: uuid.UUID) -> PoolUnit:
        request = pb.GetUnitRequest(company_id=str(company_id), unit_id=str(unit_id))
        response: pb.GetUnitResponse = await self._peer.call(self._stub.GetUnit, request)
        return _unit(response.unit)

    async def hold_state(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> HoldState:
        request = pb.GetHoldRequest(company_id=str(company_id), hold_id=str(hold_id))
        response: pb.GetHoldResponse = await self._peer.call(self._stub.GetHold, request)
        return HoldState(pb.HoldState.Name(response.hold.state).removeprefix("HOLD_STATE_"))

    async def check_office(self, company_id: uuid.UUID, office_id: uuid.UUID) -> None:
        request = pb.GetOfficeRequest(company_id=str(company_id), office_id=str(office_id))
        await self._peer.call(self._stub.GetOffice, request)

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_types: Sequence[str]
    ) -> Availability:
        request = pb.GetAvailabilityRequest(
            company_id=str(company_id), office_id=str(office_id), license_types=list(license_types)
        )
        response: pb.GetAvailabilityResponse = await self._peer.call(
            self._stub.GetAvailability, request
        )
        wanted = set(license_types)
        lines = [a for a in response.availability if a.license_type in wanted]
        return Availability(
            own_spare={a.license_type: a.own_spare for a in lines},
            own_returns_in_grace={a.license_type: a.own_returns_in_grace for a in lines},
            pool_claimable={a.license_type: a.pool_claimable for a in lines},
        )
